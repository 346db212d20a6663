"""python-etcd3 (gRPC, its own generated stubs) on kvcore as on etcd 3.5.1. The
scenarios are in etcd3_scenarios.py and run in one subprocess per server (see there
why); each test here compares one scenario's results from the two servers."""
from __future__ import annotations

import pytest

from tests.clients.names import ETCD3 as PLAIN, ETCD3_AUTH as AUTH
from tests.clients.harness import (compare_scenario, enable_app_auth, kvcore_and_etcd351,
                                   run_scenarios)
from tests.tlscerts import make_pki

MODULE = "tests.clients.etcd3_scenarios"
PURE = {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}   # etcd3_scenarios.py: why


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("etcd3")
    out = {}
    with kvcore_and_etcd351(base / "plain") as pair:
        for srv in pair:
            out[srv.kind] = run_scenarios(MODULE, srv, str(base / f"{srv.kind}-work"), PLAIN,
                                          env_extra=PURE)
    # Auth on TLS servers (etcd3_scenarios.py says why).
    pki = make_pki(str(base / "pki"))
    tls = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    with kvcore_and_etcd351(base / "auth", extra=tls, scheme="https",
                            ctl_args=("--cacert", pki.ca)) as pair:
        for srv in pair:
            enable_app_auth(srv)
            out[srv.kind].update(run_scenarios(MODULE, srv, str(base / f"{srv.kind}-work"),
                                               AUTH, "--ca", pki.ca, "--user", "root",
                                               env_extra=PURE))
    return out


@pytest.mark.parametrize("name", PLAIN + AUTH)
def test_scenario(results, name):
    compare_scenario(results, name)


def test_what_the_scenarios_show(results):
    """A few outcomes pinned, so that both servers agreeing on a broken result fails."""
    r = results["kvcore"]
    assert r["kv"]["if_not_exists"] == [True, False] and r["kv"]["delete_again"] is False
    assert r["txn"]["ok"] is True and r["txn"]["bad"] is False
    assert r["txn"]["dup_put"]["details"] == "etcdserver: duplicate key given in txn request"
    assert r["lease"]["refresh"] == [30] and r["lease"]["after_revoke"]["ttl"] == -1
    assert r["watch"]["kinds"] is True and r["watch"]["once_timeout"] == {"raised": "WatchTimedOut"}
    assert r["many_watches"]["got"] == [[i, [f"b:{i}"]] for i in range(50)]
    assert r["lock"]["a"] is True and r["lock"]["b_held"] is False and r["lock"]["b_after"]
    assert r["maintenance"]["watch_compacted_got"] == [{"raised": "RevisionCompactedError"}]
    assert r["maintenance"]["put_in_alarm"]["code"] == "StatusCode.RESOURCE_EXHAUSTED"
    assert r["maintenance"]["alarm_after"] == [] and r["maintenance"]["hash"]["moves"]
    assert r["snapshot"]["rc"] == 0 and r["snapshot"]["at_rev"] is True
    assert r["auth"]["app_denied"]["code"] == "StatusCode.PERMISSION_DENIED"
    assert r["auth"]["root_get"] == "b:by-root"
