#!/usr/bin/env bash
# Builds etcd's own load tool, `benchmark` (tools/benchmark of etcd 3.4.23: put, range,
# txn-put, watch, watch-get, watch-latency, lease-keepalive, stm, mvcc), for
# tests/clients/test_etcd_benchmark_tool.py. Debian ships etcd's server and client
# sources (golang-etcd-server-dev) but not tools/: the tool's directory comes from
# Debian's etcd source package (its patches leave tools/ alone), fetched with
# `apt-get source --download-only` through a private copy of the system's Debian
# entries plus deb-src (the machine's apt configuration and lists stay untouched), then
# built offline in GOPATH mode against /usr/share/gocode, as tests/clients/go/build.sh
# builds the client driver. The binary, named by a hash of this script (which pins the
# version) and of the Go version, and Go's build cache live under $KVCORE_TOOLS
# (default ~/.cache/kvcore-tools): a machine builds once. Prints the binary's path.
set -euo pipefail
VERSION="3.4.23-4"
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
sum="$( (go version; cat "$here/build.sh") | sha256sum | cut -c1-16)"
bin="$out/etcd-benchmark-$sum"
[ -x "$bin" ] && { echo "$bin"; exit 0; }
[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ] \
    || { echo "no etcd client source (apt-get install golang-etcd-server-dev)" >&2; exit 1; }

mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"     # apt's _apt user downloads into it

apt="$work/apt"
mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/cache/archives/partial"
: > "$apt/sources.list"
if [ -f /etc/apt/sources.list ]; then
    grep -E '^deb .*/debian' /etc/apt/sources.list | sed 'p; s/^deb /deb-src /' \
        >> "$apt/sources.list" || true
fi
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && grep -q debian-archive-keyring "$f" || continue
    sed 's/^Types: .*/Types: deb deb-src/' "$f" > "$apt/parts/$(basename "$f")"
done
for f in /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -E '^deb .*/debian' "$f" | sed 'p; s/^deb /deb-src /' \
        > "$apt/parts/$(basename "$f")" || true
done
apt_opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts="$apt/parts"
          -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache")
apt-get -qq "${apt_opts[@]}" update >&2
(cd "$work" && apt-get -q "${apt_opts[@]}" source --download-only "etcd=$VERSION") >&2

pkg="$work/gopath/src/go.etcd.io/etcd"
mkdir -p "$pkg"
tar -xzf "$work/etcd_${VERSION%-*}.orig.tar.gz" -C "$work" \
    "etcd-${VERSION%-*}/tools/benchmark"
mv "$work/etcd-${VERSION%-*}/tools" "$pkg/tools"
(cd "$pkg/tools/benchmark" && GO111MODULE=off GOFLAGS= \
    GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$out/go-build-cache" \
    go build -o "$bin.tmp.$$" .) >&2
mv "$bin.tmp.$$" "$bin"
echo "$bin"
