"""aetcd (asyncio gRPC) on kvcore as on etcd 3.5.1: KV, transactions, lease
keep-alive, watches, the lock, status/members and auth. The scenarios are in
aetcd_scenarios.py, run in one subprocess per server (harness.py says why); each test
compares one scenario's results from the two servers."""
from __future__ import annotations

import pytest

from tests.clients.harness import (compare_scenario, enable_app_auth, kvcore_and_etcd351,
                                   run_scenarios)
from tests.clients.names import AETCD

MODULE = "tests.clients.aetcd_scenarios"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("aetcd")
    out = {}
    # A small request limit, so that one revision's watch events outgrow it (fragments).
    with kvcore_and_etcd351(base, extra=("--max-request-bytes", "10000")) as pair:
        for srv in pair:
            work = str(base / f"{srv.kind}-work")
            out[srv.kind] = run_scenarios(MODULE, srv, work, AETCD[:-1])
            enable_app_auth(srv)
            out[srv.kind].update(run_scenarios(MODULE, srv, work, ["auth"], "--user", "root"))
    return out


@pytest.mark.parametrize("name", AETCD)
def test_scenario(results, name):
    compare_scenario(results, name)


def test_what_the_scenarios_show(results):
    """A few outcomes pinned, so that both servers agreeing on a broken result fails."""
    r = results["kvcore"]
    assert r["kv"]["replace"] == [True, False] and r["kv"]["delete_prefix"] == 2
    assert r["txn"]["ok"] is True and r["txn"]["bad"] is False
    assert r["lease_keep_alive"]["refreshed"] == [20, 20, 20]
    assert r["lease_keep_alive"]["after"]["ttl"] == -1
    assert [e["kind"] for e in r["watch"]["watch"]] == ["PUT", "PUT", "DELETE"]
    assert r["watch_from_compacted_revision"]["raised"] == "RevisionCompactedError"
    assert r["lock"]["a"] and r["lock"]["b_now"] is False and r["lock"]["b_waited"] is True
    assert r["status_members"]["leader"] == "<member#1>"
    assert [f[2] for f in r["watch_ids_and_fragments"]["fragments"]] == [0] * 10 + [900] * 10
    assert r["maintenance"]["snapshot"]["rc"] == 0 and r["maintenance"]["snapshot"]["at_rev"]
    assert r["maintenance"]["listed_after"] == [] and r["maintenance"]["hash"]["moves"]
    assert r["auth"]["app_denied"]["details"] == "etcdserver: permission denied"
