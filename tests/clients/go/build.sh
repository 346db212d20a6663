#!/usr/bin/env bash
# Builds tests/clients/go (the clientv3 scenario driver) against the Go etcd client as
# Debian ships it (golang-etcd-server-dev: etcd 3.4.23's clientv3 and its dependencies
# under /usr/share/gocode), offline in GOPATH mode. The binary, named by a hash of its
# sources (checkouts with different sources never overwrite each other's), and Go's
# build cache live under $KVCORE_TOOLS (default ~/.cache/kvcore-tools): a machine
# compiles the client once. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
sum="$(cat "$here"/*.go | sha256sum | cut -c1-16)"
bin="$out/clientv3-scenarios-$sum"
if [ ! -x "$bin" ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/src/clientv3-scenarios"
    cp "$here"/*.go "$work/src/clientv3-scenarios/"
    (cd "$work/src/clientv3-scenarios" && GO111MODULE=off GOFLAGS= \
        GOPATH="$work:/usr/share/gocode" GOCACHE="$out/go-build-cache" \
        go build -o "$bin.tmp.$$" . ) >&2
    mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
