"""--strict-reconfig-check's health half, against etcd 3.5.1 (3 members each): a voter
is added only while every voter has been reachable from the member asked for the last
5 s, and a reachable voter is removed only if the voters in touch, less it, still make
a quorum; both answer "etcdserver: unhealthy cluster" otherwise. An unreachable member
may always be removed. The first check keeps an operator from adding a second member
before the first one started; the second from removing a live member while another is
down, which would leave the cluster without a quorum."""
from __future__ import annotations

import json
import time

from tests import servers

HEALTH_S = 5.5      # etcd's HealthInterval (5 s) and a little
UNHEALTHY = "etcdserver: unhealthy cluster"


def _ids(member) -> dict:
    rc, out, err = member.etcdctl("member", "list", "-w", "json")
    assert rc == 0, err
    return {m.get("name", ""): m["ID"] for m in json.loads(out)["members"]}


def _change(member, *args) -> tuple:
    rc, out, err = member.etcdctl("--command-timeout=10s", "member", *args)
    return (rc == 0, UNHEALTHY in err)


def _scenario(members) -> list:
    out = []
    lead = servers.leader_of(members, timeout=60.0)
    ask = next(m for m in members if m is not lead)        # a follower takes the requests
    time.sleep(HEALTH_S)
    out.append(_change(ask, "add", "x1", f"--peer-urls=http://127.0.0.1:{servers.free_port()}"))
    # x1 is a voter now, never started: nobody is in touch with it.
    out.append(_change(ask, "add", "x2", f"--peer-urls=http://127.0.0.1:{servers.free_port()}"))
    try:
        x1 = next(i for n, i in _ids(ask).items() if not n)
        out.append(_change(ask, "remove", f"{x1:x}"))       # unreachable: may go
        # One member down: removing a live one would leave one of two voters running.
        down = next(m for m in members if m is not ask and m is not lead)
        down.stop()
        time.sleep(HEALTH_S)
        names = _ids(ask)
        lead_name = next(n for n, i in names.items() if i == _status_leader(ask))
        out.append(_change(ask, "remove", f"{names[lead_name]:x}"))
        down_name = next(n for n in names if n and n not in (lead_name, _own_name(ask)))
        out.append(_change(ask, "remove", f"{names[down_name]:x}"))   # the down one: may go
    except (AssertionError, KeyError, StopIteration) as e:  # e.g. the cluster lost its quorum
        out.append(("scenario broke off", repr(e)[:200]))
    return out


def _status_leader(member) -> int:
    rc, out, err = member.etcdctl("endpoint", "status", "-w", "json")
    assert rc == 0, err
    return json.loads(out)[0]["Status"]["leader"]


def _own_name(member) -> str:
    rc, out, err = member.etcdctl("endpoint", "status", "-w", "json")
    own = json.loads(out)[0]["Status"]["header"]["member_id"]
    return next(n for n, i in _ids(member).items() if i == own)


def test_member_changes_refused_while_unhealthy_as_etcd(tmp_path):
    got = {}
    for kind in ("etcd", "kvcore"):
        base = str(tmp_path / kind)
        members = (servers.start_etcd_cluster(base, 3) if kind == "etcd"
                   else servers.start_cluster(base, 3))
        try:
            got[kind] = _scenario(members)
        finally:
            for m in members:
                m.stop()
    assert got["etcd"] == [(True, False), (False, True), (True, False), (False, True),
                           (True, False)], got
    assert got["kvcore"] == got["etcd"]
