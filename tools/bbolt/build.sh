#!/usr/bin/env bash
# Builds the test tool `bbolt` (check, buckets) from Debian's bbolt library source
# (golang-github-coreos-bbolt-dev) with Debian's Go, once: the binary is cached at
# $KVCORE_TOOLS (default ~/.cache/kvcore-tools) and its path is printed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
bin="$out/bbolt"
if [ ! -x "$bin" ] || [ "$here/main.go" -nt "$bin" ]; then
    mkdir -p "$out"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/src/bboltcmd"
    cp "$here/main.go" "$work/src/bboltcmd/"
    (cd "$work/src/bboltcmd" && GO111MODULE=off GOPATH="$work:/usr/share/gocode" \
        GOCACHE="$work/cache" go build -o "$bin.tmp" . ) >&2
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
