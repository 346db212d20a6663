"""The peer port answers etcd's HTTP requests (curl http://member:2380/version,
/members, /raft/probing, ...) as etcd 3.5.1 does: a one-member kvcore and etcd side
by side over http and over https (--peer-auto-tls), the same status, the headers
etcd sets (Date dropped) and bodies once member IDs, cluster IDs, URLs and times
are normalised; and a 3-member cluster's /members, from every member, lists what
`etcdctl member list -w json` lists, on kvcore as on etcd."""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import time

import pytest

from tests import servers

ETCD351 = "/opt/etcd351/bin/etcd"

# (method, path, body): etcd's own endpoints, Go's ServeMux answers, rafthttp's
# refusals of a caller that is not an etcd member
REQUESTS = [
    ("GET", "/version", None), ("GET", "/version?x=1", None), ("POST", "/version", b""),
    ("HEAD", "/version", None), ("GET", "/members", None), ("PUT", "/members", b""),
    ("GET", "/raft/probing", None), ("POST", "/raft/probing", b"x"),
    ("GET", "/downgrade/enabled", None), ("POST", "/downgrade/enabled", b""),
    ("GET", "/raft", None), ("POST", "/raft", b"garbage"), ("DELETE", "/raft", None),
    ("GET", "/raft/snapshot", None), ("POST", "/raft/snapshot", b"garbage"),
    ("GET", "/raft/stream/msgapp/1", None), ("GET", "/raft/stream/message/1", None),
    ("POST", "/raft/stream/msgapp/1", b""), ("GET", "/raft/stream", None),
    ("GET", "/raft/", None), ("GET", "/raft/x", None),
    ("GET", "/leases", None), ("GET", "/leases/internal", None),
    ("POST", "/leases", b"garbage"), ("POST", "/leases/internal", b"garbage"),
    ("GET", "/members/promote/1", None), ("POST", "/members/promote/abc", b""),
    ("POST", "/members/promote/12", b""), ("GET", "/members/promote", None),
    ("GET", "/members/hashkv", None), ("GET", "/members/hashkv", b'{"revision":1}'),
    ("GET", "/members/hashkv", b'{"revision":99}'), ("GET", "/members/hashkv", b"garbage"),
    ("POST", "/members/hashkv", b""),
    ("GET", "/", None), ("GET", "/foo", None), ("HEAD", "/foo", None), ("GET", "/metrics", None),
    ("GET", "/version/", None), ("GET", "/members/", None), ("GET", "//version", None),
    ("GET", "/raft/../members?a=b", None), ("POST", "/./version", b""),
    ("GET", "//%E2%82%AC?q&'", None), ("GET", "/vers%69on", None), ("GET", "/ver%zzsion", None),
    ("GET", "*", None), ("OPTIONS", "*", None), ("GET", "http://h/version", None),
]


def exchange(port: int, method: str, path: str, body=None, tls: bool = False,
             headers=None) -> tuple:
    """(status, [(header, value)] without Date, body) of one request."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, [(k, v) for k, v in resp.getheaders() if k != "Date"], data
    finally:
        conn.close()


def member_list(srv) -> dict:
    rc, out, err = servers.etcdctl(servers.endpoints([srv]), "member", "list", "-w", "json")
    assert rc == 0, err
    return json.loads(out)


def normalised(srv, reply: tuple) -> tuple:
    """The reply with this member's cluster/member IDs, ports, the time and the body's
    length replaced (IDs as etcdctl reports them, so a wrong ID stays a difference)."""
    listed = member_list(srv)
    cid = f"{listed['header']['cluster_id']:x}"
    status, headers, body = reply
    text = body.decode()
    for m in listed["members"]:
        text = text.replace(str(m["ID"]), "<member>")
    text = re.sub(r"127\.0\.0\.1:\d+", "<addr>", text)
    text = re.sub(r'"Now":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"', '"Now":"<time>"', text)
    # IDs, ports and times vary in length: a body's length must be its own (a HEAD's
    # answer has none and keeps the length compared as it is)
    length = dict(headers).get("Content-Length")
    if length is not None and body:
        assert int(length) == len(body)
        headers = [(k, "<n>" if k == "Content-Length" else v) for k, v in headers]
    headers = [(k, "<cluster>" if v == cid else v) for k, v in headers]
    return status, headers, text


def cluster_version_decided(srv, tls: bool = False, timeout: float = 30.0) -> None:
    """Until the member's /version names a cluster version (etcd decides it a moment
    after the first election; "not_decided" before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = exchange(srv.peer_port, "GET", "/version", tls=tls)[2]
        if json.loads(body)["etcdcluster"] != "not_decided":
            return
        time.sleep(0.2)
    raise TimeoutError(f"{srv.kind}: cluster version not decided")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp("peerhttp"), workers=1,
                                 etcd_binary=ETCD351) as (kv, et):
        cluster_version_decided(et)
        yield kv, et


@pytest.mark.parametrize("method,path,body", REQUESTS,
                         ids=[f"{m} {p} {b!r}" for m, p, b in REQUESTS])
def test_peer_port_answers_like_etcd(pair, method, path, body):
    kv, et = pair
    want = normalised(et, exchange(et.peer_port, method, path, body))
    got = normalised(kv, exchange(kv.peer_port, method, path, body))
    assert got == want


def test_members_names_this_member_and_cluster(pair):
    for srv in pair:
        status, headers, body = exchange(srv.peer_port, "GET", "/members")
        listed = member_list(srv)
        assert status == 200
        assert dict(headers)["X-Etcd-Cluster-Id"] == f"{listed['header']['cluster_id']:x}"
        assert json.loads(body) == [
            {"id": m["ID"], "peerURLs": m["peerURLs"], "name": m["name"],
             "clientURLs": m["clientURLs"]} for m in listed["members"]]


def test_members_lists_an_unstarted_learner(pair):
    """A learner added but never started: no name or client URLs yet, isLearner after
    the peer URLs (Go's field order); promoting it over the peer port answers etcd's
    412 (it is not in sync)."""
    promote = []
    for srv in pair:
        rc, out, err = srv.etcdctl("member", "add", "lx", "--learner",
                                   "--peer-urls=http://127.0.0.1:1")
        assert rc == 0, err
        listed = member_list(srv)
        learner = next(m["ID"] for m in listed["members"] if m.get("isLearner"))
        try:
            status, _, body = exchange(srv.peer_port, "GET", "/members")
            assert status == 200
            want = [{k: v for k, v in (("id", m["ID"]), ("peerURLs", m["peerURLs"]),
                                       ("isLearner", m.get("isLearner")),
                                       ("name", m.get("name")),
                                       ("clientURLs", m.get("clientURLs"))) if v}
                    for m in sorted(listed["members"], key=lambda m: m["ID"])]
            assert json.loads(body) == want
            assert b'"peerURLs":["http://127.0.0.1:1"],"isLearner":true}' in body
            promote.append(normalised(srv, exchange(srv.peer_port, "POST",
                                                    f"/members/promote/{learner}", b"")))
        finally:
            assert srv.etcdctl("member", "remove", f"{learner:x}")[0] == 0
    assert promote[0] == promote[1]
    assert promote[0][0] == 412


def test_short_request_is_answered_at_once(pair):
    """An HTTP/1.0 request shorter than kvcore's own handshake is answered, not left
    waiting for the bytes a kvcore peer would send."""
    got = []
    for srv in pair:
        with socket.create_connection(("127.0.0.1", srv.peer_port), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        got.append(re.sub(rb"Date: [^\r]*\r\n", b"", data))
    assert got[0] == got[1]
    assert got[0].startswith(b"HTTP/1.0 404 Not Found\r\n")
    assert got[0].endswith(b"\r\n\r\n404 page not found\n")


def test_keep_alive_serves_the_next_request(pair):
    for srv in pair:
        conn = http.client.HTTPConnection("127.0.0.1", srv.peer_port, timeout=20)
        try:
            for path, status in (("/version", 200), ("/foo", 404), ("/members", 200)):
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                assert (srv.kind, resp.status) == (srv.kind, status)
        finally:
            conn.close()


def test_peer_port_over_https_answers_like_etcd(tmp_path):
    flags = ("--peer-auto-tls",)
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), peer_scheme="https", extra=flags)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351,
                                peer_scheme="https", extra=flags)
        try:
            cluster_version_decided(et, tls=True)
            for method, path, body in (("GET", "/version", None), ("GET", "/members", None),
                                       ("GET", "/raft/probing", None),
                                       ("GET", "/downgrade/enabled", None),
                                       ("GET", "/raft", None), ("POST", "/raft", b"garbage"),
                                       ("GET", "/foo", None)):
                want = normalised(et, exchange(et.peer_port, method, path, body, tls=True))
                got = normalised(kv, exchange(kv.peer_port, method, path, body, tls=True))
                assert got == want, (method, path)
            listed = member_list(kv)
            assert listed["members"][0]["peerURLs"][0].startswith("https://")
        finally:
            et.stop()
    finally:
        kv.stop()


def _all_started(members, timeout: float = 40.0) -> dict:
    """etcdctl's member list once every member has published its client URLs."""
    deadline = time.monotonic() + timeout
    listed = {}
    while time.monotonic() < deadline:
        rc, out, _ = servers.etcdctl(servers.endpoints(members), "member", "list", "-w",
                                     "json")
        if rc == 0:
            listed = json.loads(out)
            if len(listed["members"]) == len(members) and \
                    all(m.get("name") and m.get("clientURLs") for m in listed["members"]):
                return listed
        time.sleep(0.3)
    return listed


@pytest.mark.parametrize("binary", [None, ETCD351], ids=["kvcore", "etcd351"])
def test_three_member_cluster_members(tmp_path, binary):
    members = servers.start_cluster(str(tmp_path), n=3, etcd_binary=binary)
    try:
        listed = _all_started(members)
        want = sorted(({"id": m["ID"], "peerURLs": m["peerURLs"], "name": m["name"],
                        "clientURLs": m["clientURLs"]} for m in listed["members"]),
                      key=lambda m: m["id"])
        assert len(want) == 3
        cid = f"{listed['header']['cluster_id']:x}"
        for srv in members:
            status, headers, body = exchange(srv.peer_port, "GET", "/members")
            assert (status, dict(headers)["X-Etcd-Cluster-Id"]) == (200, cid)
            assert json.loads(body) == want
            assert body.endswith(b"]\n")
    finally:
        for m in members:
            m.stop()
