#!/usr/bin/env bash
# Builds etcd's end-to-end test binary (go test -c of go.etcd.io/etcd/tests/e2e, etcd
# 3.4.23 as Debian's golang-etcd-server-dev ships it under /usr/share/gocode), offline in
# GOPATH mode, the way tests/integration/functional/build.sh builds etcd's tester. The
# binary is named by a hash of that source and of the Go version, under $KVCORE_TOOLS
# (default ~/.cache/kvcore-tools), with Go's build cache beside it: a machine compiles
# it once. Prints the binary's path.
set -euo pipefail
src=/usr/share/gocode/src/go.etcd.io/etcd/tests/e2e
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
[ -d "$src" ] || { echo "no $src (apt-get install golang-etcd-server-dev)" >&2; exit 1; }
command -v go >/dev/null || { echo "no go (apt-get install golang-go)" >&2; exit 1; }
sum="$( (go version; find "$src" -name '*.go' | LC_ALL=C sort | xargs cat) \
        | sha256sum | cut -c1-16)"
bin="$out/etcd-e2e-$sum.test"
if [ ! -x "$bin" ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$src" && GO111MODULE=off GOFLAGS= GOPATH="$work:/usr/share/gocode" \
        GOCACHE="$out/go-build-cache" go test -c -o "$work/e2e.test" .) >&2
    mv "$work/e2e.test" "$bin"
fi
echo "$bin"
