"""etcd's own functional (fault-injection) tester against a kvcore cluster and against
etcd 3.5.1, the same configuration for both (harness.py).

etcd-tester kills, SIGQUITs-and-removes and re-adds members, blackholes and delays
their peer traffic through the agents' proxies, while its stressers write, read,
delete and txn keys and keep leases alive; after each case it compares hashkv across
the members and checks that revoked or expired leases are gone. The run passes when
the tester exits 0 with every case's consistency check passed. build.sh compiles the
tester from Debian's golang-etcd-server-dev (tools/setup.sh installs it and Go);
without them the build fails and so do these tests.

The default run is a round of four cases on each server side by side; the slow one
covers every case that needs neither root nor gofail failpoints, the snapshot-forcing
variants and etcd-runner's election, lock, lease and watch runners.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import etcd351
from tests.integration.functional import harness

# One of each fault kind: a member SIGQUIT with its data removed, then removed from the
# cluster, re-added and started empty (it catches up from the leader); the leader cut
# off from its peers for twice the election timeout; a follower's peer traffic delayed
# past the election timeout; stress with no fault, where errors fail the case.
ROUND = ("SIGQUIT_AND_REMOVE_ONE_FOLLOWER", "BLACKHOLE_PEER_PORT_TX_RX_LEADER",
         "DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER", "NO_FAIL_WITH_STRESS")

ALL_CASES = (
    "SIGTERM_ONE_FOLLOWER", "SIGTERM_LEADER", "SIGTERM_QUORUM", "SIGTERM_ALL",
    "SIGQUIT_AND_REMOVE_ONE_FOLLOWER", "SIGQUIT_AND_REMOVE_LEADER",
    "BLACKHOLE_PEER_PORT_TX_RX_ONE_FOLLOWER", "BLACKHOLE_PEER_PORT_TX_RX_LEADER",
    "BLACKHOLE_PEER_PORT_TX_RX_QUORUM", "BLACKHOLE_PEER_PORT_TX_RX_ALL",
    "DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER", "RANDOM_DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER",
    "DELAY_PEER_PORT_TX_RX_LEADER", "RANDOM_DELAY_PEER_PORT_TX_RX_LEADER",
    "DELAY_PEER_PORT_TX_RX_QUORUM", "RANDOM_DELAY_PEER_PORT_TX_RX_QUORUM",
    "DELAY_PEER_PORT_TX_RX_ALL", "RANDOM_DELAY_PEER_PORT_TX_RX_ALL",
    "NO_FAIL_WITH_STRESS", "NO_FAIL_WITH_NO_STRESS_FOR_LIVENESS")

# The cases that go on until snapshot-count revisions were written while the fault
# lasts, within snapshot-count/1000*3 seconds: with etcd's own snapshot-count (10,000)
# that is 30 s, and kvcore needs part of it for a new leader when the leader's peer
# port is blackholed (docs/decisions.md, "etcd's functional tester").
SNAPSHOT_CASES = (
    "SIGTERM_ONE_FOLLOWER_UNTIL_TRIGGER_SNAPSHOT", "SIGTERM_LEADER_UNTIL_TRIGGER_SNAPSHOT",
    "SIGQUIT_AND_REMOVE_ONE_FOLLOWER_UNTIL_TRIGGER_SNAPSHOT",
    "SIGQUIT_AND_REMOVE_LEADER_UNTIL_TRIGGER_SNAPSHOT",
    "BLACKHOLE_PEER_PORT_TX_RX_ONE_FOLLOWER_UNTIL_TRIGGER_SNAPSHOT",
    "BLACKHOLE_PEER_PORT_TX_RX_LEADER_UNTIL_TRIGGER_SNAPSHOT",
    "DELAY_PEER_PORT_TX_RX_ONE_FOLLOWER_UNTIL_TRIGGER_SNAPSHOT",
    "DELAY_PEER_PORT_TX_RX_LEADER_UNTIL_TRIGGER_SNAPSHOT")

RUNNERS = (("KV_WRITE_SMALL", 0.5), ("ELECTION_RUNNER", 0.0), ("LOCK_RACER_RUNNER", 0.0),
           ("LEASE_RUNNER", 0.0), ("WATCH_RUNNER", 0.0))


@pytest.fixture(scope="module")
def bins() -> str:
    return harness.build()


def _both(bins, tmp_path, cases, timeout, parallel: int = 2,
          kinds=("kvcore", "etcd"), **kw) -> dict:
    """The same round against a kvcore cluster and an etcd 3.5.1 cluster, at once
    (``parallel=1``: one after the other, for rounds whose cases need the machine's
    whole write rate)."""
    exes = {"kvcore": harness.kvcore_launcher(str(tmp_path / "kvcore-launcher")),
            "etcd": etcd351.ETCD}
    with ThreadPoolExecutor(parallel) as pool:
        futs = {kind: pool.submit(harness.run, bins, str(tmp_path / kind), exes[kind],
                                  cases, timeout, **kw)
                for kind in kinds}
        return {kind: f.result() for kind, f in futs.items()}


def _assert_all_passed(runs: dict, cases) -> None:
    for kind, r in runs.items():
        assert r.rc == 0 and r.passed == list(cases), (
            f"{kind}: tester exit {r.rc}, cases passed {r.passed} of {list(cases)}:\n"
            + "\n".join(r.failures()) + "\n" + r.member_logs())


def test_a_round_of_faults_on_kvcore_and_etcd(bins, tmp_path):
    runs = _both(bins, tmp_path, ROUND, timeout=150)
    _assert_all_passed(runs, ROUND)
    # the stress really ran: keys were written on every member's endpoint
    for kind, r in runs.items():
        assert '"msg":"stress START"' in r.log and '"KV_HASH"' in r.log, kind


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_case_without_failpoints(bins, tmp_path):
    _assert_all_passed(_both(bins, tmp_path, ALL_CASES, timeout=900), ALL_CASES)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cases_until_a_snapshot(bins, tmp_path):
    # kvcore only: etcd 3.5.1 passed all 8 in one run and, in another, its healed
    # member answered "too many requests" (applied index over 5,000 behind committed)
    # for the tester's whole minute of health checks after
    # BLACKHOLE_..._LEADER_UNTIL_TRIGGER_SNAPSHOT.
    runs = _both(bins, tmp_path, SNAPSHOT_CASES, timeout=650, kinds=("kvcore",),
                 stress_qps=5000, stress_clients=20, snapshot_count=10000)
    _assert_all_passed(runs, SNAPSHOT_CASES)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_election_lock_lease_and_watch_runners(bins, tmp_path):
    # No member is killed here: etcd-runner's election command then fails its own check
    # ('expected leader "", got ...') on either server, now and then. One cluster at a
    # time: 12 runner processes per cluster.
    cases = ("NO_FAIL_WITH_STRESS", "BLACKHOLE_PEER_PORT_TX_RX_LEADER",
             "DELAY_PEER_PORT_TX_RX_LEADER")
    runs = _both(bins, tmp_path, cases, timeout=300, parallel=1, stressers=RUNNERS,
                 checkers=("KV_HASH", "RUNNER"))
    _assert_all_passed(runs, cases)
