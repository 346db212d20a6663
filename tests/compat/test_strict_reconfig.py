"""--strict-reconfig-check, against etcd 3.5.1: with it (the default) adding a voter
that would leave too few started voters for a quorum is refused; without it the
change is proposed (and, lacking a quorum, cannot commit). Its refusals come out in
etcd's form."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
NOT_STARTED = "etcdserver: re-configuration failed due to not enough started members"


def _add_two_voters(kind: str, base: str, strict: str) -> tuple:
    flags = (f"--strict-reconfig-check={strict}",)
    data = os.path.join(base, f"{kind}-{strict}.etcd")
    srv = (servers.start_kvcore(data, workers=1, extra=flags) if kind == "kvcore"
           else servers.start_etcd(data, binary=ETCD351, extra=flags))
    try:
        out = []
        for name in ("a", "b"):
            rc, _, err = srv.etcdctl("--command-timeout=3s", "member", "add", name,
                                     f"--peer-urls=http://127.0.0.1:{servers.free_port()}")
            out.append((rc == 0, NOT_STARTED in err))
        return tuple(out)
    finally:
        srv.stop()


@pytest.mark.parametrize("strict", ["true", "false"])
def test_strict_reconfig_check_like_etcd(tmp_path, strict):
    etcd = _add_two_voters("etcd", str(tmp_path), strict)
    kv = _add_two_voters("kvcore", str(tmp_path), strict)
    # the first add is allowed (a one-member cluster may grow to two)
    assert etcd[0] == (True, False)
    # the second: refused by the check, or proposed and stuck without a quorum
    assert etcd[1] == ((False, True) if strict == "true" else (False, False))
    assert kv == etcd


def _refusals_with_an_unstarted_member(kind: str, base: str) -> list:
    """A one-member cluster grown by a member that never starts (allowed: the restore
    case), then changes the quorum check refuses, over the gateway and etcdctl."""
    data = os.path.join(base, f"{kind}-unstarted.etcd")
    srv = (servers.start_kvcore(data, workers=1) if kind == "kvcore"
           else servers.start_etcd(data, binary=ETCD351))
    try:
        def post(path, body):
            req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/v3/cluster/member/{path}",
                                         data=json.dumps(body).encode(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, "added" if path == "add" else r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        out = [post("add", {"peerURLs": [f"http://127.0.0.1:{servers.free_port()}"]}),
               # an ID no member has: the quorum check comes first, as in etcd
               post("remove", {"ID": "1"}),
               post("add", {"peerURLs": [f"http://127.0.0.1:{servers.free_port()}"]})]
        for args in (("member", "remove", "1"),
                     ("member", "add", "x", f"--peer-urls=http://127.0.0.1:{servers.free_port()}")):
            rc, _, err = srv.etcdctl("--command-timeout=3s", *args)
            out.append((rc, err.strip()))
        return out
    finally:
        srv.stop()


def test_refusals_with_an_unstarted_member_like_etcd(tmp_path):
    """etcd sends "not enough started members" with gRPC code Unknown (its error map
    holds the client-side error there): HTTP 500 and code 2 on the gateway."""
    etcd = _refusals_with_an_unstarted_member("etcd", str(tmp_path))
    assert etcd[0] == (200, "added")
    body = json.dumps({"error": NOT_STARTED, "code": 2, "message": NOT_STARTED},
                      separators=(",", ":"))
    assert etcd[1] == etcd[2] == (500, body)
    assert etcd[3] == etcd[4] == (1, f"Error: {NOT_STARTED}")
    assert _refusals_with_an_unstarted_member("kvcore", str(tmp_path)) == etcd
