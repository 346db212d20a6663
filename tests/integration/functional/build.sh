#!/usr/bin/env bash
# Builds etcd's functional tester (etcd-agent, etcd-tester, etcd-runner) from Debian's
# golang-etcd-server-dev (etcd 3.4.23's go.etcd.io/etcd/functional under
# /usr/share/gocode), offline in GOPATH mode, the way tests/clients/go/build.sh builds
# the client driver. The binaries go to one directory named by a hash of that source
# and of the Go version, under $KVCORE_TOOLS (default ~/.cache/kvcore-tools), with
# Go's build cache beside them: a machine compiles them once. Prints the directory.
set -euo pipefail
src=/usr/share/gocode/src/go.etcd.io/etcd/functional
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
[ -d "$src" ] || { echo "no $src (apt-get install golang-etcd-server-dev)" >&2; exit 1; }
sum="$( (go version; find "$src" -name '*.go' | LC_ALL=C sort | xargs cat) \
        | sha256sum | cut -c1-16)"
dir="$out/etcd-functional-$sum"
if [ ! -x "$dir/etcd-runner" ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    for cmd in etcd-agent etcd-tester etcd-runner; do
        (cd "$work" && GO111MODULE=off GOFLAGS= GOPATH="$work:/usr/share/gocode" \
            GOCACHE="$out/go-build-cache" \
            go build -o "$work/bin/$cmd" "go.etcd.io/etcd/functional/cmd/$cmd") >&2
    done
    rm -rf "$dir"
    mv "$work/bin" "$dir"
fi
echo "$dir"
