#!/usr/bin/env bash
# The test command (README, .ci/run). Extra arguments go to both pytest runs.
#
# 1. The whole suite but `slow`, on the compiled extensions (a missing native build
#    fails here: tests/unit/twins/test_selector.py and every server start).
# 2. The part that runs kvcore's own code on the plain-Python twins
#    (KVCORE_PURE_PYTHON=1: WAL codec and writer, revision index, proposer; gRPC by
#    grpcio, as the native engine has no twin): tests/unit (every twin directly) and
#    tests/integration (real server processes and clusters on the twins: restarts,
#    torn WALs, snapshots, failover, linearizability). Tests of the native engine
#    itself (marker native_engine) are deselected there. tests/sim runs Raft and its
#    driver in memory (its one twin, the proposer, is compared directly), and
#    tests/compat checks the etcdctl-visible API layer, the same Python in both modes
#    over the same twins as tests/integration: both pass in pure mode too
#    (docs/decisions.md has the times) but would add minutes to CI and test little new.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest tests -m "not slow" "$@"
KVCORE_PURE_PYTHON=1 python3 -m pytest tests/unit tests/integration -m "not slow" "$@"
