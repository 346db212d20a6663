#!/usr/bin/env bash
# The test command (README, .ci/run). Extra arguments go to both pytest runs.
#
# 1. The whole suite but `slow`, on the compiled extensions (a missing native build
#    fails here: tests/unit/twins/test_selector.py and every server start).
# 2. Again on the plain-Python twins (KVCORE_PURE_PYTHON=1: WAL codec and writer,
#    revision index, proposer; gRPC by grpcio behind the native front's Python twin,
#    as the native engine has no twin; tests/compat/test_health.py: that front serves
#    HTTP/1.x on the client port; test_grpc_keepalive.py: its splice closes a client
#    that does not answer grpcio's keepalive ping), the
#    tests whose outcome depends on those modules: tests/unit (every twin directly) and
#    the integration tests of what they carry — the WAL, the index and the proposer
#    under restarts, torn WALs, damaged files, snapshots, failover and the robustness
#    tool's fault rounds (linearizability, lost writes, watch guarantees). The rest of the suite runs the same
#    Python over the same twins and passes in pure mode too (docs/decisions.md has the
#    runs and times), but would add minutes to CI and test nothing new there. Tests of
#    the native engine itself (marker native_engine) are deselected in that mode.
#
# The two runs go side by side (most of the suite waits on servers and timers, so the
# second fills the first's idle CPU): the pure-Python one takes its ports from a range
# below the kernel's ephemeral ports (KVCORE_PORT_RANGE), its tmp dirs from a base of
# its own, and its output is printed after the first's. The compiled run's test files
# are spread over 4 pytest-xdist workers, each with ports of its own (tests/conftest.py):
# about half the time of one process; KVCORE_TEST_WORKERS=N picks N, 0 runs them in
# one process (docs/decisions.md, "CI: test files spread over pytest-xdist workers").
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${KVCORE_TEST_WORKERS:-4}"
xdist=()
if [ "$workers" -gt 0 ]; then
    xdist=(-n "$workers" --dist loadfile)
fi
pure_out=$(mktemp)
pure_tmp=$(mktemp -d)
trap 'rm -rf "$pure_out" "$pure_tmp"' EXIT
# Above 20000-23799: etcd's e2e suite (tests/integration/e2e) listens on fixed ports there.
KVCORE_PURE_PYTHON=1 KVCORE_PORT_RANGE=24000-29999 python3 -m pytest -m "not slow" \
    --basetemp="$pure_tmp/t" "$@" \
    tests/unit \
    tests/compat/test_health.py \
    tests/compat/test_grpc_keepalive.py \
    tests/integration/test_durability.py \
    tests/integration/test_storage_faults.py \
    tests/integration/cluster/test_failover.py \
    tests/integration/cluster/test_snapshot_catchup.py \
    tests/integration/robust >"$pure_out" 2>&1 &
pure_pid=$!
main_rc=0
python3 -m pytest tests -m "not slow" "${xdist[@]}" --durations=25 "$@" || main_rc=$?
pure_rc=0
wait "$pure_pid" || pure_rc=$?
echo "---- the same tests on the plain-Python twins (KVCORE_PURE_PYTHON=1) ----"
cat "$pure_out"
if [ "$main_rc" -ne 0 ] || [ "$pure_rc" -ne 0 ]; then
    echo "tools/test.sh: compiled run exit $main_rc, pure-Python run exit $pure_rc"
    exit 1
fi
