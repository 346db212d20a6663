"""etcd's v3 auth: the same etcdctl script against kvcore (both gRPC engines, two
workers) and Debian's etcd 3.4.23; outputs must agree field by field (only the
endpoint's port is normalised). Then what a script cannot show: a bogus token,
AuthStatus's revision, watch creation refused, and auth state across a restart."""
import os
import re
import subprocess

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

SETUP = [
    ("auth", "enable"),                                  # no root user yet
    ("user", "add", "root:rootpw"),
    ("user", "add", "root:x"),
    ("role", "add", "root"),
    ("role", "add", "root"),
    ("user", "grant-role", "root", "root"),
    ("user", "grant-role", "root", "root"),              # granted twice: no error
    ("user", "grant-role", "nobody", "root"),
    ("user", "grant-role", "root", "nope"),
    ("user", "add", "alice:apw"),
    ("user", "add", "bob:bpw"),
    ("role", "add", "reader"),
    ("role", "add", "tmp"),
    ("user", "grant-role", "bob", "tmp"),
    ("role", "delete", "tmp"),                           # revoked from bob too
    ("user", "get", "bob"),
    ("user", "delete", "bob"),
    ("user", "delete", "bob"),
    ("role", "grant-permission", "reader", "read", "/a/", "--prefix"),
    ("role", "grant-permission", "reader", "readwrite", "k1"),
    ("role", "grant-permission", "reader", "write", "k0", "k5"),
    ("role", "grant-permission", "reader", "read", "z", "--from-key"),
    ("role", "grant-permission", "reader", "write", "k1"),   # same key: type replaced
    ("role", "grant-permission", "nope", "write", "k1"),
    ("role", "get", "reader"),
    ("role", "get", "root"),
    ("role", "revoke-permission", "reader", "k0", "k5"),
    ("role", "revoke-permission", "reader", "k0", "k6"),
    ("role", "get", "reader"),
    ("user", "grant-role", "alice", "reader"),
    ("user", "get", "alice"),
    ("user", "get", "alice", "--detail"),
    ("user", "list"),
    ("role", "list"),
    ("user", "revoke-role", "alice", "root"),
    ("auth", "enable"),
]

ENABLED = [
    ("--user", "root:rootpw", "put", "/a/x", "1"),
    ("put", "/a/x", "1"),
    ("get", "/a/x"),
    ("--user", "alice:apw", "get", "/a/x"),
    ("--user", "alice:apw", "put", "/a/x", "2"),         # read-only prefix
    ("--user", "alice:bad", "get", "/a/x"),
    ("--user", "nobody:bad", "get", "/a/x"),
    ("--user", "alice:apw", "get", "/a/", "--prefix"),
    ("--user", "alice:apw", "get", "/", "--prefix"),     # wider than granted
    ("--user", "alice:apw", "get", "zz"),
    ("--user", "alice:apw", "get", "z", "--from-key"),
    ("--user", "alice:apw", "get", "y", "--from-key"),
    ("--user", "alice:apw", "put", "k1", "v"),
    ("--user", "alice:apw", "get", "k1"),                # write-only key
    ("--user", "alice:apw", "put", "k1", "v", "--prev-kv"),
    ("--user", "alice:apw", "del", "k1"),
    ("--user", "alice:apw", "del", "/a/x"),
    ("--user", "alice:apw", "txn", {"input": 'value("/a/x") = "1"\n\nput k1 t\n\nget /a/x\n\n'}),
    ("--user", "alice:apw", "txn", {"input": 'value("/b") = "1"\n\nput k1 t\n\n\n'}),
    ("--user", "alice:apw", "txn", {"input": '\n\nput k1 t\n\nput k2 t\n\n'}),
    ("--user", "alice:apw", "user", "list"),
    ("--user", "root:rootpw", "user", "list"),
    ("--user", "root:rootpw", "role", "delete", "root"),
    ("--user", "root:rootpw", "user", "delete", "root"),
    ("--user", "root:rootpw", "user", "revoke-role", "root", "root"),
    ("--user", "root:rootpw", "user", "revoke-role", "alice", "nope"),
    ("--user", "root:rootpw", "user", "get", "bob"),
    ("--user", "root:rootpw", "role", "get", "bob"),
    ("--user", "alice:apw", "user", "get", "alice"),     # herself: allowed
    ("--user", "alice:apw", "user", "get", "root"),
    ("--user", "alice:apw", "role", "get", "reader"),    # her role: allowed
    ("--user", "alice:apw", "role", "get", "root"),
    ("--user", "alice:apw", "role", "add", "x"),
    ("--user", "root:rootpw", "compaction", "1"),
    ("--user", "alice:apw", "defrag"),
    ("--user", "root:rootpw", "defrag"),
    ("--user", "alice:apw", "endpoint", "hashkv"),
    ("--user", "alice:apw", "member", "add", "m2", "--peer-urls", "http://127.0.0.1:1"),
    ("--user", "alice:apw", "watch", "/b"),              # refused at creation
    ("--user", "root:rootpw", "user", "passwd", "alice", "--interactive=false",
     {"input": "apw2\n"}),
    ("--user", "alice:apw", "get", "/a/x"),
    ("--user", "alice:apw2", "get", "/a/x"),
    ("--user", "alice:apw2", "auth", "disable"),
    ("--user", "root:rootpw", "auth", "disable"),
    ("get", "/a/x"),
    ("put", "/a/x", "3"),
    ("user", "get", "alice"),
]


def _norm(s: str) -> str:
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", s).strip()


def _run(srv, steps):
    out = []
    for step in steps:
        args = [a for a in step if not isinstance(a, dict)]
        opts = next((a for a in step if isinstance(a, dict)), {})
        rc, o, e = srv.etcdctl(*args, **opts)
        out.append((" ".join(args), rc, _norm(o), _norm(e)))
    return out


@pytest.fixture(scope="module", params=["grpcio", pytest.param("native", marks=pytest.mark.native_engine)])
def kv(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"auth-{request.param}")
    s = servers.start_kvcore(str(d / "kv.etcd"), workers=2,
                             extra=("--grpc-engine", request.param))
    yield s
    s.stop()


@pytest.fixture
def etcd(tmp_path):
    s = servers.start_etcd(str(tmp_path / "etcd.etcd"))
    yield s
    s.stop()


def _compare(kv, et, steps):
    mismatches = [f"etcdctl {g[0]}\n  kvcore: {g[1:]}\n  etcd:   {w[1:]}"
                  for g, w in zip(_run(kv, steps), _run(et, steps)) if g != w]
    assert not mismatches, "\n".join(mismatches)


def test_etcdctl_auth_script_matches_real_etcd(kv, etcd):
    _compare(kv, etcd, SETUP + ENABLED)


def _stub(srv):
    ch = grpc.insecure_channel(srv.endpoint)
    return ch, rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.AuthStub(ch)


def _code(fn):
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return None


def _enable(srv):
    for step in (("user", "add", "root:rootpw"), ("role", "add", "root"),
                 ("user", "grant-role", "root", "root"), ("user", "add", "ro:ropw"),
                 ("role", "add", "ro"), ("role", "grant-permission", "ro", "read", "p/", "--prefix"),
                 ("user", "grant-role", "ro", "ro"), ("auth", "enable")):
        rc, _, err = srv.etcdctl(*step)
        assert rc == 0, (step, err)


def test_tokens_and_status_match_real_etcd(kv, etcd, tmp_path):
    """Over gRPC, as a client library sees it: a bogus token, no token, a good one,
    a token after the user's password changed; AuthStatus's revision."""
    # kv's state is whatever the script left: use a fresh kvcore for the same start.
    fresh = servers.start_kvcore(str(tmp_path / "kv2.etcd"), workers=2)
    try:
        seen = []
        for srv in (fresh, etcd):
            _enable(srv)
            ch, kvs, auth = _stub(srv)
            with ch:
                got = [_code(lambda: kvs.Range(rpc_pb2.RangeRequest(key=b"p/1"),
                                               metadata=[("token", "bogus.1")])),
                       _code(lambda: kvs.Range(rpc_pb2.RangeRequest(key=b"p/1")))]
                tok = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="ro", password="ropw")).token
                root = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root",
                                                                     password="rootpw")).token
                assert re.fullmatch(r"[A-Za-z]{16}\.\d+", tok), tok
                got.append(len(kvs.Range(rpc_pb2.RangeRequest(key=b"p/1"),
                                         metadata=[("token", tok)]).kvs))
                got.append(_code(lambda: kvs.Put(rpc_pb2.PutRequest(key=b"p/1", value=b"v"),
                                                 metadata=[("token", tok)])))
                got.append(_code(lambda: kvs.Compact(rpc_pb2.CompactionRequest(revision=1),
                                                     metadata=[("token", root)])))
                # A lease with a key the user may not write: LeaseRevoke is refused.
                ls = rpc_pb2_grpc.LeaseStub(ch)
                ls.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x1234, TTL=60),
                              metadata=[("token", root)])
                kvs.Put(rpc_pb2.PutRequest(key=b"p/2", value=b"v", lease=0x1234),
                        metadata=[("token", root)])
                got.append(_code(lambda: ls.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x1234),
                                                        metadata=[("token", tok)])))
                got.append(_code(lambda: ls.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x1234),
                                                        metadata=[("token", root)])))
                auth.UserChangePassword(rpc_pb2.AuthUserChangePasswordRequest(
                    name="ro", password="new"), metadata=[("token", root)])
                got.append(_code(lambda: kvs.Range(rpc_pb2.RangeRequest(key=b"p/1"),
                                                   metadata=[("token", tok)])))
            seen.append(got)
        assert seen[0] == seen[1]
        assert seen[0][0] == (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
        assert seen[0][1] == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
        assert seen[0][3] == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        assert seen[0][5] == (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
        assert seen[0][6] is None
    finally:
        fresh.stop()


def test_auth_survives_restart(tmp_path):
    s = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    try:
        _enable(s)
        assert s.etcdctl("--user", "root:rootpw", "put", "p/1", "v")[0] == 0
        s = s.restart()
        assert s.etcdctl("get", "p/1")[2].strip() == "Error: etcdserver: user name is empty"
        rc, out, _ = s.etcdctl("--user", "ro:ropw", "get", "p/1")
        assert (rc, out) == (0, "p/1\nv\n")
        assert s.etcdctl("--user", "ro:ropw", "put", "p/1", "w")[2].strip() == \
            "Error: etcdserver: permission denied"
        rc, out, _ = s.etcdctl("--user", "root:rootpw", "role", "get", "ro")
        assert out == "Role ro\nKV Read:\n\t[p/, p0) (prefix p/)\nKV Write:\n"
        assert s.etcdctl("--user", "root:rootpw", "user", "list")[1] == "ro\nroot\n"
        assert s.etcdctl("--user", "root:rootpw", "auth", "disable")[0] == 0
        s = s.restart()
        assert s.etcdctl("get", "p/1")[1] == "p/1\nv\n"
    finally:
        s.stop()


ETCD351 = "/opt/etcd351/bin/etcd"


def test_auth_status_matches_etcd_351(tmp_path):
    """AuthStatus is etcd 3.5's (3.4 has none): enabled and the auth revision, which
    starts at 1 and moves with every change but AuthEnable; admin-only once enabled."""
    assert os.access(ETCD351, os.X_OK), "etcd 3.5.1 (tools/setup.sh installs it) is the oracle here"
    ctl = os.path.join(os.path.dirname(ETCD351), "etcdctl")
    steps = [("auth", "status", "-w", "json"), ("user", "add", "root:r"),
             ("auth", "status", "-w", "json"), ("role", "add", "root"),
             ("user", "grant-role", "root", "root"), ("user", "add", "u:p"),
             ("auth", "enable"), ("--user", "root:r", "auth", "status", "-w", "json"),
             ("--user", "root:r", "auth", "status"), ("auth", "status"),
             ("--user", "u:p", "auth", "status"), ("--user", "root:r", "auth", "disable"),
             ("auth", "status")]
    outs = []
    for srv in (servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2),
                servers.start_etcd(str(tmp_path / "e.etcd"), binary=ETCD351)):
        try:
            got = []
            for step in steps:
                p = subprocess.run([ctl, "--endpoints", srv.endpoint, *step], capture_output=True,
                                   text=True, timeout=30)
                out = re.sub(r'"(cluster_id|member_id|raft_term|revision)":\d+,?', "", p.stdout)
                err = [l for l in p.stderr.splitlines() if not l.startswith("{")]
                got.append((step, p.returncode, out.strip(), err))
            outs.append(got)
        finally:
            srv.stop()
    assert outs[0] == outs[1]


def test_json_gateway_takes_the_token_from_authorization(tmp_path):
    """etcd's gateway: POST /v3/auth/authenticate, then the token in Authorization."""
    import json
    import urllib.error
    import urllib.request

    s = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)

    def post(path, body, token=None):
        req = urllib.request.Request(f"http://{s.endpoint}{path}", json.dumps(body).encode(),
                                     {"Authorization": token} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    try:
        _enable(s)
        st, body = post("/v3/kv/range", {"key": "cC8x"})
        assert (st, body["message"]) == (400, "etcdserver: user name is empty")
        st, body = post("/v3/auth/authenticate", {"name": "ro", "password": "ropw"})
        assert st == 200
        tok = body["token"]
        st, body = post("/v3/kv/range", {"key": "cC8x"}, tok)          # p/1
        assert st == 200 and "kvs" not in body
        st, body = post("/v3/kv/put", {"key": "cC8x", "value": "dg=="}, tok)
        assert (st, body["message"]) == (403, "etcdserver: permission denied")
    finally:
        s.stop()


def test_token_expires_after_auth_token_ttl(tmp_path):
    """--auth-token-ttl: an unused simple token is forgotten after its TTL."""
    import time
    s = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                             extra=("--auth-token-ttl", "1"))
    try:
        _enable(s)
        ch, kvs, auth = _stub(s)
        with ch:
            tok = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="ro", password="ropw")).token
            kvs.Range(rpc_pb2.RangeRequest(key=b"p/1"), metadata=[("token", tok)])
            time.sleep(2.5)
            assert _code(lambda: kvs.Range(rpc_pb2.RangeRequest(key=b"p/1"),
                                           metadata=[("token", tok)])) == \
                (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    finally:
        s.stop()


def _lock_election_probe(srv):
    from kvcore.api import v3election_pb2 as epb, v3election_pb2_grpc
    from kvcore.api import v3lock_pb2 as lpb, v3lock_pb2_grpc
    for step in (("user", "add", "root:r"), ("role", "add", "root"),
                 ("user", "grant-role", "root", "root"), ("user", "add", "al:a"),
                 ("role", "add", "rw"), ("role", "grant-permission", "rw", "readwrite", "lk", "--prefix"),
                 ("user", "grant-role", "al", "rw"), ("auth", "enable")):
        assert srv.etcdctl(*step)[0] == 0, step
    out = []
    with grpc.insecure_channel(srv.endpoint) as ch:
        auth, ls = rpc_pb2_grpc.AuthStub(ch), rpc_pb2_grpc.LeaseStub(ch)
        lk, el = v3lock_pb2_grpc.LockStub(ch), v3election_pb2_grpc.ElectionStub(ch)
        md = [("token", auth.Authenticate(rpc_pb2.AuthenticateRequest(name="al", password="a")).token)]
        lid = ls.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), metadata=md).ID
        for fn in (lambda: lk.Lock(lpb.LockRequest(name=b"x", lease=lid), metadata=md, timeout=10),
                   lambda: lk.Lock(lpb.LockRequest(name=b"lk", lease=lid), metadata=md, timeout=10),
                   lambda: lk.Lock(lpb.LockRequest(name=b"lk", lease=lid), timeout=10),
                   lambda: lk.Unlock(lpb.UnlockRequest(key=b"x/1"), metadata=md, timeout=10),
                   lambda: el.Campaign(epb.CampaignRequest(name=b"x", lease=lid, value=b"v"),
                                       metadata=md, timeout=10),
                   lambda: el.Campaign(epb.CampaignRequest(name=b"lkel", lease=lid, value=b"v"),
                                       metadata=md, timeout=10),
                   lambda: el.Leader(epb.LeaderRequest(name=b"x"), metadata=md, timeout=10),
                   lambda: el.Leader(epb.LeaderRequest(name=b"lkel"), metadata=md, timeout=10)):
            out.append(_code(fn))
    return out


def test_lock_and_election_need_key_permissions_like_etcd(etcd, tmp_path):
    """etcd's Lock and Election act with the caller's token, so they need the KV
    permissions their calls need (errors arrive with code Unknown, as etcd's)."""
    s = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    try:
        got = _lock_election_probe(s)
    finally:
        s.stop()
    want = _lock_election_probe(etcd)
    assert got == want
    assert want[0] == (grpc.StatusCode.UNKNOWN, "etcdserver: permission denied")
    assert want[1] is None
