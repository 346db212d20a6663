#!/usr/bin/env bash
# Installs etcd3-py (PyPI, import name `etcd3`) with its pinned dependencies into a
# directory of its own: python-etcd3, which the other client tests use, has the same
# import name, so etcd3-py is only ever put on the path of the scenario subprocess
# (tests/clients/test_etcd3py.py). The directory is named by a hash of
# requirements.txt under $KVCORE_TOOLS (default ~/.cache/kvcore-tools); a machine
# installs it once, with $PYTHON (default python3). Prints the directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${KVCORE_TOOLS:-$HOME/.cache/kvcore-tools}"
sum="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
dir="$out/etcd3-py-$sum"
if [ ! -f "$dir/.installed" ]; then
    rm -rf "$dir.tmp.$$"
    mkdir -p "$out"
    "${PYTHON:-python3}" -m pip install -q --disable-pip-version-check --no-deps \
        --target "$dir.tmp.$$" -r "$here/requirements.txt" >&2
    touch "$dir.tmp.$$/.installed"
    rm -rf "$dir"
    mv "$dir.tmp.$$" "$dir"
fi
echo "$dir"
