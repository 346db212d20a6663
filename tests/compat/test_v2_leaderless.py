"""A v2 write on a member that knows no leader, kvcore against etcd 3.4.23 (the v2
oracle): it waits for a leader until the request timeout, then both answer 500 with
errorCode 300 ("Raft Internal Error") and the cause "etcdserver: request timed out";
a write sent during the outage that a leader's return unblocks succeeds on both.

Two members with a short election timeout (request timeout 5 s + 2 x 0.5 s); one is
killed -9, so the other has no quorum and (pre-vote) no leader."""
from __future__ import annotations

import concurrent.futures
import json
import time

from tests import servers
from tests.httpraw import call

ETCD34 = "/usr/bin/etcd"
FLAGS = ("--enable-v2", "--heartbeat-interval", "50", "--election-timeout", "500")


def _put(port: int, key: str, value: str):
    st, _, body = call(port, f"/v2/keys/{key}", raw=f"value={value}".encode(), method="PUT",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    doc = json.loads(body)
    return st, doc.get("errorCode"), doc.get("message"), doc.get("cause"), \
        doc.get("node", {}).get("value")


def _scenario(members) -> dict:
    leader = servers.leader_of(members)
    survivor = next(m for m in members if m is not leader)
    out = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        leader.kill9()
        servers.wait_leaderless(survivor.port)
        late = pool.submit(_put, survivor.port, "k", "late")
        out["put with no leader in time"] = late.result()
        during = pool.submit(_put, survivor.port, "k", "during")
        time.sleep(1.0)
        out["still waiting after 1 s"] = not during.done()
        leader.restart()
        out["put during the outage"] = during.result()
    return out


def test_v2_write_waits_for_a_leader_as_etcd_34(tmp_path):
    got = servers.on_both(tmp_path, _scenario, 2, FLAGS, ETCD34)
    assert got["kvcore"] == got["etcd"], got
    assert got["etcd"]["put with no leader in time"] == \
        (500, 300, "Raft Internal Error", "etcdserver: request timed out", None)
    assert got["etcd"]["still waiting after 1 s"] is True
    assert got["etcd"]["put during the outage"] == (201, None, None, None, "during")
