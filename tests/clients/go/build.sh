#!/usr/bin/env bash
# Builds tests/clients/go (the clientv3 scenario driver) against the Go etcd client as
# Debian ships it (golang-etcd-server-dev: etcd 3.4.23's clientv3 and its dependencies
# under /usr/share/gocode), offline in GOPATH mode. The binary and Go's build cache live
# under $KVCORE_TOOLS (default ~/.cache/kvcore-tools), so a machine compiles the client
# once and rebuilds only when a source file here changed. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
bin="$out/clientv3-scenarios"
stale=0
[ -x "$bin" ] || stale=1
for f in "$here"/*.go; do [ "$f" -nt "$bin" ] && stale=1; done
if [ "$stale" = 1 ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/src/clientv3-scenarios"
    cp "$here"/*.go "$work/src/clientv3-scenarios/"
    (cd "$work/src/clientv3-scenarios" && GO111MODULE=off GOFLAGS= \
        GOPATH="$work:/usr/share/gocode" GOCACHE="$out/go-build-cache" \
        go build -o "$bin.tmp" . ) >&2
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
