"""etcd3gw and tooz across a three-member cluster, kvcore's and etcd 3.5.1's: each
member sees the same members and leader, a write on one is read on another, a watch
on one sees writes made on another, a tooz lock taken through one member is refused
through another, and with the leader killed the two left serve the same clients."""
from __future__ import annotations

import threading
import time

import etcd3gw
from tooz import coordination

from tests import etcd351, servers
from tests.clients.harness import Norm, same


FAST_ELECTION = ("--heartbeat-interval", "50", "--election-timeout", "500")


def _settled(members, timeout: float = 30.0, old_leader: str = "0") -> None:
    """Until every member names the same leader, not ``old_leader`` (a follower learns
    it a heartbeat after the election)."""
    clients = [etcd3gw.client(host="127.0.0.1", port=m.port, timeout=10) for m in members]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = {c.status().get("leader") for c in clients}
        if len(leaders) == 1 and not leaders & {None, "0", old_leader}:
            return
        time.sleep(0.1)
    raise TimeoutError("the members do not agree on a leader")


def _scenario(members):
    clients = [etcd3gw.client(host="127.0.0.1", port=m.port, timeout=10) for m in members]
    statuses = [c.status() for c in clients]
    leaders = {s["leader"] for s in statuses}
    n = Norm(int(statuses[0]["header"]["revision"]))
    out = {"members": [sorted((m["name"], len(m["peerURLs"]), len(m["clientURLs"]))
                              for m in c.members()) for c in clients],
           "one_leader": len(leaders) == 1,
           "leader_is_a_member": leaders <= {s["header"]["member_id"] for s in statuses}}
    rev = int(clients[1].status()["header"]["revision"]) + 1
    threading.Thread(target=clients[2].put, args=("cl/w", "from-2"), daemon=True).start()
    event = clients[1].watch_once("cl/w", timeout=10, start_revision=rev)
    out["watch_on_1"] = [event["kv"]["value"], n.rev(event["kv"]["mod_revision"])]
    clients[0].put("cl/k", "from-0")
    out["read_on_2"] = clients[2].get("cl/k")
    coords = []
    try:
        for i, name in ((0, b"c0"), (2, b"c2")):
            coords.append(coordination.get_coordinator(
                f"etcd3+http://127.0.0.1:{members[i].port}?timeout=10", name))
            coords[-1].start()
        la, lb = coords[0].get_lock(b"res"), coords[1].get_lock(b"res")
        out["lock"] = [la.acquire(blocking=False), lb.acquire(blocking=False),
                       la.release(), lb.acquire(blocking=False), lb.release()]
    finally:
        stops = [threading.Thread(target=c.stop) for c in coords]   # ~1 s each in tooz
        for t in stops:
            t.start()
        for t in stops:
            t.join(30)
    # The leader killed: the two left elect one and serve the same clients again.
    by_id = {s["header"]["member_id"]: i for i, s in enumerate(statuses)}
    old = by_id[statuses[0]["leader"]]
    members[old].kill9()
    left = [c for i, c in enumerate(clients) if i != old]
    _settled([m for i, m in enumerate(members) if i != old], old_leader=statuses[0]["leader"])
    left[0].put("cl/after", "x")
    new = {c.status()["leader"] for c in left}
    out["after_failover"] = {"read": left[1].get("cl/after"), "one_new_leader": len(new) == 1,
                             "new_is_not_old": statuses[0]["leader"] not in new,
                             "members": sorted(m["name"] for m in left[1].members())}
    return out


def test_three_member_cluster(tmp_path):
    results = {}
    for kind, binary in (("kvcore", None), ("etcd", etcd351.ETCD)):
        # A shorter election timeout on both: the failover then takes ~1 s, not ~3.
        members = servers.start_cluster(str(tmp_path / kind), n=3, etcd_binary=binary,
                                        extra=FAST_ELECTION)
        try:
            _settled(members)
            results[kind] = _scenario(members)
        finally:
            for m in members:
                m.stop()
    same(results)
    r = results["kvcore"]
    assert r["one_leader"] and r["members"][0] == [("m0", 1, 1), ("m1", 1, 1), ("m2", 1, 1)]
    assert r["lock"] == [True, False, True, True, True] and r["read_on_2"] == [b"from-0"]
    assert r["after_failover"]["read"] == [b"x"] and r["after_failover"]["new_is_not_old"]
