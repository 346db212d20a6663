"""Member changes through the v2 API (POST /v2/members, DELETE and PUT of
/v2/members/<id>) against Debian's etcd 3.4.23: the same sequence on a 3-member
kvcore cluster and a 3-member etcd cluster, both --enable-v2, compared answer by
answer (status, Content-Type, X-Etcd-Cluster-Id present, the JSON body with member
IDs and ports replaced by names). The added member really joins
(--initial-cluster-state existing) and is removed again; ETCDCTL_API=2 etcdctl's member
commands run against both; lower-case methods get Go's 405."""
from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests import servers

ETCD34 = os.environ.get("KVCORE_TEST_ETCD", "/usr/bin/etcd")
# etcd refuses an add until this member has been connected to every voter for 5 s
# (etcdserver's HealthInterval), and a remove of a member connected for less.
HEALTH_INTERVAL = 5.5


class Side:
    """One cluster, and the names its IDs and ports get in a normalised answer."""

    def __init__(self, members):
        # m1 is removed below: a follower, so that etcd's next conf change does not
        # wait out an election (a removed leader's last change can time out there)
        leader = servers.leader_of(members)
        if members[1] is leader:
            members = [members[0], members[2], members[1]]
        self.members = members
        # member names (m0.. on kvcore, e0.. on etcd) by their place here
        self.member_names = {os.path.basename(m.data_dir)[:-5]: f"n{i}"
                             for i, m in enumerate(members)}
        self.names: dict[str, str] = {}          # member id (hex) or port -> name
        for i, m in enumerate(members):
            self.names[str(m.port)] = f"c{i}"
            self.names[str(m.peer_port)] = f"p{i}"
        self.extra_ports: dict[str, int] = {}
        for label in ("px", "px2", "py", "pz", "pz2", "cx"):
            port = servers.free_port()
            self.extra_ports[label] = port
            self.names[str(port)] = label
        self.joined = None

    @property
    def port(self) -> int:
        return self.members[0].port

    def url(self, label: str) -> str:
        if label.startswith("p") and label[1:].isdigit():
            return f"http://127.0.0.1:{self.members[int(label[1:])].peer_port}"
        return f"http://127.0.0.1:{self.extra_ports[label]}"

    def learn_ids(self) -> None:
        """Name each member ID after its peer URL's port's name."""
        for m in self.list_members():
            port = m["peerURLs"][0].rsplit(":", 1)[1]
            self.names[m["id"]] = "id-" + self.names.get(port, port)

    def list_members(self) -> list:
        return json.loads(self.request("GET", "/v2/members")[3])["members"]

    def id_of(self, label: str) -> str:
        want = self.url(label)
        for m in self.list_members():
            if want in m["peerURLs"]:
                return m["id"]
        raise KeyError(label)

    def request(self, method: str, path: str, body: bytes = b"",
                ct: str | None = "application/json") -> tuple:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        headers = {"Content-Type": ct} if ct is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        out = (r.status, r.getheader("Content-Type"),
               r.getheader("X-Etcd-Cluster-Id") is not None, r.read().decode())
        c.close()
        return out

    def norm(self, text: str) -> str:
        text = re.sub(r"\b(\d{4,5})\b", lambda m: self.names.get(m.group(1), "port?"), text)
        text = re.sub(r"\b[0-9a-f]{12,16}\b", lambda m: self.names.get(m.group(), "id?"), text)
        text = re.sub(r"isLeader=\w+", "isLeader=?", text)   # either may lead
        return re.sub(r"\b[em][0-9]\b", lambda m: self.member_names.get(m.group(), "?"), text)

    def norm_answer(self, ans: tuple) -> tuple:
        status, ct, has_cid, body = ans
        if body.startswith("{") and '"members"' in body:     # Go's order is by ID
            doc = json.loads(body)
            doc["members"].sort(key=lambda m: self.norm(m["id"]))
            body = json.dumps(doc, separators=(",", ":")) + "\n"
        return status, ct, has_cid, self.norm(body)


def _join(kind: str, base: str, side: Side, initial: str) -> servers.Server:
    """The added member, started with --initial-cluster-state existing."""
    data = os.path.join(base, f"{kind}-x.etcd")
    port, peer = side.extra_ports["cx"], side.extra_ports["px2"]
    argv = [*servers._member_argv("x", data, port, peer, "http", "http", initial),
            "--initial-cluster-state", "existing", "--enable-v2"]
    if kind == "kvcore":
        argv = [sys.executable, "-m", "kvcore", *argv, "--workers", "1"]
        env = dict(os.environ)
    else:
        argv = [ETCD34, *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    return servers._launch(kind, argv, port, peer, data, data + ".log", env)


@pytest.fixture()
def pair(tmp_path):
    kv = servers.start_cluster(str(tmp_path / "kv"), 3, extra=("--enable-v2",))
    try:
        et = servers.start_etcd_cluster(str(tmp_path / "etcd"), 3, binary=ETCD34,
                                        extra=("--enable-v2",))
    except BaseException:
        for m in kv:
            m.stop()
        raise
    sides = (Side(kv), Side(et))
    try:
        yield sides
    finally:
        for s in sides:
            for m in s.members + ([s.joined] if s.joined else []):
                m.stop()


def _both(sides, what, fn):
    got = [s.norm_answer(fn(s)) for s in sides]
    assert got[0] == got[1], f"{what}: kvcore {got[0]} != etcd {got[1]}"
    return got[0]


def _urls_body(side: Side, *labels) -> bytes:
    return json.dumps({"peerURLs": [side.url(label) for label in labels]}).encode()


def _wait_joined(side: Side, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m["name"] == "x" and m["clientURLs"] for m in side.list_members()):
            return
        time.sleep(0.2)
    raise TimeoutError("the added member did not publish itself")


def test_member_add_update_remove_like_etcd_34(pair, tmp_path):
    kv, et = pair
    for s in pair:
        s.learn_ids()
    time.sleep(HEALTH_INTERVAL)
    same = lambda what, fn: _both(pair, what, fn)   # noqa: E731
    same("list", lambda s: s.request("GET", "/v2/members"))
    # refusals that change nothing
    for body in (b"", b"{", b"[]", b"{}", b'{"peerURLs":null}', b'{"peerURLs":"x"}',
                 b'{"peerURLs":[1]}', b'{"peerURLs":["foo"]}', b'{"peerURLs":["://x"]}',
                 b'{"peerURLs":["http://1.2.3.4"]}', b'{"peerURLs":["http://1.2.3.4:1/x"]}',
                 b'{"peerURLs":["http://a b:1"]}', b'{"peerURLs":["http://a:b"]}',
                 b'{"peerURLs":["http://a%zz:1"]}', b'{"peerURLs":["http://a:1#%z"]}',
                 b'{"peerURLs":["http:x"]}', b'{"peerURLs":["http://[::1]"]}'):
        same(f"add {body!r}", lambda s: s.request("POST", "/v2/members", body))
    for ct in (None, "text/plain", "Application/JSON"):
        same(f"add as {ct}", lambda s: s.request("POST", "/v2/members",
                                                 _urls_body(s, "px"), ct))
    same("add an existing peer URL", lambda s: s.request(
        "POST", "/v2/members", _urls_body(s, "px", "p1")))
    same("add, the key in another case", lambda s: s.request(
        "POST", "/v2/members", json.dumps({"PEERURLS": [s.url("p2")]}).encode()))
    for path in ("/v2/members", "/v2/members/", "/v2/members/zz", "/v2/members/0x12",
                 "/v2/members/12345", "/v2/members/12/34", "/v2/members/10000000000000000"):
        same(f"DELETE {path}", lambda s: s.request("DELETE", path, ct=None))
        same(f"PUT {path}", lambda s: s.request("PUT", path, _urls_body(s, "py")))
    # the add
    added = same("add x", lambda s: s.request("POST", "/v2/members?x=1", _urls_body(s, "px")))
    assert added[0] == 201
    for s in pair:
        s.learn_ids()
    same("list with x", lambda s: s.request("GET", "/v2/members"))
    # x's peer URL: to one in use (409), bad, then to where x will listen
    same("update x to p2", lambda s: s.request(
        "PUT", f"/v2/members/{s.id_of('px')}", _urls_body(s, "p2")))
    same("update x, bad body", lambda s: s.request(
        "PUT", f"/v2/members/{s.id_of('px')}", b'{"peerURLs":[]}'))
    same("update x, as text", lambda s: s.request(
        "PUT", f"/v2/members/{s.id_of('px')}", _urls_body(s, "px2"), "text/plain"))
    xid = {}
    for s in pair:
        xid[s] = s.id_of("px")
        s.names[xid[s]] = "id-x"
    same("update x", lambda s: s.request("PUT", f"/v2/members/{xid[s]}",
                                         _urls_body(s, "px2")))
    same("list after the update", lambda s: s.request("GET", "/v2/members"))
    # remove m1: x is not started, so m0, m2 and x are left with 2 started
    same("remove m1", lambda s: s.request("DELETE", f"/v2/members/{s.id_of('p1')}", ct=None))
    m1id = {}
    for s in pair:
        m1id[s] = next(k for k, v in s.names.items() if v == "id-p1")
    # now removing m2 would leave 1 started voter of 2: refused
    same("remove m2", lambda s: s.request("DELETE", f"/v2/members/{s.id_of('p2')}", ct=None))
    same("remove m1 again", lambda s: s.request("DELETE", f"/v2/members/{m1id[s]}", ct=None))
    same("update m1", lambda s: s.request("PUT", f"/v2/members/{m1id[s]}",
                                          _urls_body(s, "pz")))
    # x joins
    for s, kind in ((kv, "kvcore"), (et, "etcd")):
        ms = s.list_members()
        initial = ",".join(f"{m['name'] or 'x'}={m['peerURLs'][0]}" for m in ms)
        s.joined = _join(kind, str(tmp_path), s, initial)
    for s in pair:
        _wait_joined(s)
    same("list with x joined", lambda s: s.request("GET", "/v2/members"))
    time.sleep(HEALTH_INTERVAL)
    same("remove x", lambda s: s.request("DELETE", f"/v2/members/{xid[s]}", ct=None))
    same("remove x again", lambda s: s.request("DELETE", f"/v2/members/{xid[s]}", ct=None))
    same("list at the end", lambda s: s.request("GET", "/v2/members"))
    # methods Go's server takes and etcd's handler refuses
    for method in ("get", "post", "delete", "put", "Get", "PATCH"):
        same(f"{method} /v2/members", lambda s: s.request(method, "/v2/members", ct=None))
        same(f"{method} /v2/members/<m0>", lambda s: s.request(
            method, f"/v2/members/{s.id_of('p0')}", ct=None))
    _etcdctl_member_commands(pair)


def _ctl2(side: Side, *args) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.run([servers.ETCDCTL, "--endpoints", f"http://127.0.0.1:{side.port}",
                        *args], capture_output=True, text=True, timeout=30, env=env)
    out = side.norm(p.stdout)
    if args[:2] == ("member", "list"):        # in ID order on each side
        out = "".join(sorted(out.splitlines(keepends=True)))
    out = re.sub(r'(ETCD_INITIAL_CLUSTER=")([^"]*)"',
                 lambda m: m.group(1) + ",".join(sorted(m.group(2).split(","))) + '"', out)
    err = side.norm(p.stderr)
    if "; error #" in err:        # the client tries the members in a random order
        head, *parts = re.sub(r"error #\d+: ", "error #: ", err).split("; ")
        err = "; ".join([head, *sorted(p.strip() for p in parts)])
    return p.returncode, out, err


def _etcdctl_member_commands(pair) -> None:
    """etcdctl 3.4's v2 member commands on what is left (m0 and m2)."""
    def same(*args):
        got = [_ctl2(s, *[a(s) if callable(a) else a for a in args]) for s in pair]
        assert got[0] == got[1], f"etcdctl {args}: kvcore {got[0]} != etcd {got[1]}"
        return got[0]
    same("member", "list")
    same("member", "add", "z", lambda s: s.url("pz"))
    for s in pair:
        s.names[s.id_of("pz")] = "id-z"
    same("member", "add", "z2", lambda s: s.url("p0"))
    same("member", "list")
    same("member", "update", lambda s: s.id_of("pz"), lambda s: s.url("pz2"))
    same("member", "update", "12345", lambda s: s.url("py"))
    zid = {s: s.id_of("pz2") for s in pair}
    same("member", "remove", lambda s: zid[s])
    same("member", "remove", lambda s: zid[s])
    same("member", "remove", "12345")
    same("member", "list")


def _one(port: int, method: str, path: str, body: bytes = b"", auth: str | None = None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    out = (r.status, r.getheader("Content-Type"), r.getheader("X-Etcd-Cluster-Id") is not None,
           re.sub(r'"id":"[0-9a-f]+"', '"id":"<id>"',
                  re.sub(r"127\.0\.0\.1:\d+", "<addr>", r.read().decode())))
    c.close()
    return out


def test_member_changes_under_auth_like_etcd_34(tmp_path):
    """v2 auth: root only (401 otherwise, before anything else). v3 auth: etcd finds
    no user on a v2 request and refuses every change that parses with a 500."""
    with servers.kvcore_and_etcd(tmp_path, kv_extra=("--enable-v2",), etcd_extra=(
            "--enable-v2",), workers=1, etcd_binary=ETCD34) as (kv, et):
        def same(what, *args, **kw):
            got = [_one(s.port, *[a(s) if callable(a) else a for a in args], **kw)
                   for s in (kv, et)]
            assert got[0] == got[1], f"{what}: kvcore {got[0]} != etcd {got[1]}"
        own = lambda s: json.dumps(  # noqa: E731
            {"peerURLs": [f"http://127.0.0.1:{s.peer_port}"]}).encode()
        new = b'{"peerURLs":["http://127.0.0.1:1"]}'
        # v2 auth on
        same("root user", "PUT", "/v2/auth/users/root", b'{"user":"root","password":"pw"}')
        same("v2 auth on", "PUT", "/v2/auth/enable")
        same("add, no user", "POST", "/v2/members", b"{")
        same("remove, no user", "DELETE", "/v2/members/12")
        same("add, root", "POST", "/v2/members", own, auth="root:pw")
        same("remove, root", "DELETE", "/v2/members/12", auth="root:pw")
        same("v2 auth off", "DELETE", "/v2/auth/enable", auth="root:pw")
        # v3 auth on
        for s in (kv, et):
            assert s.etcdctl("user", "add", "root:pw")[0] == 0
            assert s.etcdctl("auth", "enable")[0] == 0
        same("add, v3 auth", "POST", "/v2/members", new)
        same("add a used URL, v3 auth", "POST", "/v2/members", own)
        same("add bad JSON, v3 auth", "POST", "/v2/members", b'{"peerURLs":[1]}')
        same("remove, v3 auth", "DELETE", "/v2/members/12")
        same("update, v3 auth", "PUT", "/v2/members/12", new)
        same("update bad id, v3 auth", "PUT", "/v2/members/zz", new)
        same("list, v3 auth", "GET", "/v2/members")
