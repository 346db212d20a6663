"""Auth tokens across a 3-member cluster, kvcore against etcd 3.5.1 (simple and JWT
tokens): a token issued through one member works on the others, forged, expired,
foreign and stale tokens are refused with the same code and message, and a
permission revoked while writes are in flight lets none through after it."""
import os
import threading
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

ETCD351 = "/opt/etcd351/bin/etcd"


def _rsa_pem(path_priv, path_pub):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path_priv, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(path_pub, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


class Cluster:
    def __init__(self, members, jwt_key=None):
        self.members = members
        self.jwt_key = jwt_key
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{m.port}") for m in members]

    def kv(self, i):
        return rpc_pb2_grpc.KVStub(self.channels[i])

    def auth(self, i):
        return rpc_pb2_grpc.AuthStub(self.channels[i])

    def close(self):
        for c in self.channels:
            c.close()
        for m in self.members:
            m.stop()


def outcome(fn, *args, **kw):
    """'ok' or (status code name, message): what a call returned, comparable."""
    try:
        fn(*args, timeout=15, **kw)
        return "ok"
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def watch_outcome(c, i, token):
    """A Watch on /a/ opened with ``token`` on member i: its first answer or error."""
    stub = rpc_pb2_grpc.WatchStub(c.channels[i])
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b"/a/", range_end=b"/a0"))
    call = stub.Watch(iter([req]), metadata=_md(token), timeout=15)
    try:
        first = next(call)
        return ("created", first.created, first.canceled)
    except grpc.RpcError as e:
        return (e.code().name, e.details())
    finally:
        call.cancel()


def _md(token):
    return (("token", token),)


def _start(kind, base, token_kind):
    extra, key = [], None
    if token_kind == "jwt":
        priv, pub = os.path.join(base, "jwt.key"), os.path.join(base, "jwt.pub")
        os.makedirs(base, exist_ok=True)
        key = _rsa_pem(priv, pub)
        extra = ["--auth-token", f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"]
    members = servers.start_cluster(base, n=3, extra=tuple(extra),
                                     etcd_binary=ETCD351 if kind == "etcd" else None)
    c = Cluster(members, key)
    deadline = time.monotonic() + 30
    while True:   # every member answers (a leader exists)
        if all(m.etcdctl("endpoint", "health", timeout=15)[0] == 0 for m in members):
            break
        assert time.monotonic() < deadline, "cluster not healthy"
        time.sleep(0.2)
    for args in [("user", "add", "root:rootpw"), ("role", "add", "root"),
                 ("user", "grant-role", "root", "root"), ("user", "add", "alice:apw"),
                 ("role", "add", "rw"),
                 ("role", "grant-permission", "rw", "readwrite", "/a/", "--prefix"),
                 ("user", "grant-role", "alice", "rw"), ("auth", "enable")]:
        rc, out, err = members[0].etcdctl(*args)
        assert rc == 0, (args, out, err)
    return c


def _scenario(c: Cluster) -> dict:
    """Everything the comparison looks at, by name."""
    out = {}
    tok = c.auth(0).Authenticate(rpc_pb2.AuthenticateRequest(name="alice", password="apw"),
                                 timeout=15).token
    out["watch on m1 at once"] = watch_outcome(c, 1, tok)
    # Used at once on the other members (they may have to wait for the entry).
    for i in (1, 2, 0):
        out[f"put on m{i}"] = outcome(c.kv(i).Put, rpc_pb2.PutRequest(key=b"/a/x", value=b"1"),
                                      metadata=_md(tok))
        out[f"range on m{i}"] = outcome(c.kv(i).Range, rpc_pb2.RangeRequest(key=b"/a/x"),
                                        metadata=_md(tok))
        out[f"denied on m{i}"] = outcome(c.kv(i).Put, rpc_pb2.PutRequest(key=b"/b", value=b"1"),
                                         metadata=_md(tok))
    out["authorization key on m2"] = outcome(   # etcd's other metadata key for the token
        c.kv(2).Put, rpc_pb2.PutRequest(key=b"/a/q", value=b"1"),
        metadata=(("authorization", tok),))
    bad = {"garbage": "not-a-token", "forged simple": "AbCdEfGhIjKlMnOp.3",
           "truncated": tok[:-3]}
    if c.jwt_key is not None:
        now = int(time.time())
        bad["jwt expired"] = jwt.encode({"username": "alice", "revision": 100,
                                         "exp": now - 60}, c.jwt_key, algorithm="RS256")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        bad["jwt other cluster's key"] = jwt.encode(
            {"username": "root", "revision": 100, "exp": now + 600}, other, algorithm="RS256")
        bad["jwt wrong method"] = jwt.encode(
            {"username": "root", "revision": 100, "exp": now + 600}, "a-secret-of-at-least-32-bytes-long!", algorithm="HS256")
        bad["jwt unsigned"] = jwt.encode(
            {"username": "root", "revision": 100, "exp": now + 600}, None, algorithm="none")
    out["watch with a forged token"] = watch_outcome(c, 2, "AbCdEfGhIjKlMnOp.2")
    # A token naming an entry not applied yet: the member holds the call until it
    # is, then finds no such token.
    applied = rpc_pb2_grpc.MaintenanceStub(c.channels[2]).Status(
        rpc_pb2.StatusRequest(), timeout=15).raftAppliedIndex
    later = f"AbCdEfGhIjKlMnOp.{applied + 3}"
    held: list = []
    t = threading.Thread(target=lambda: held.append(watch_outcome(c, 2, later)))
    t.start()
    for n in range(5):
        c.kv(0).Put(rpc_pb2.PutRequest(key=b"/a/later", value=b"%d" % n),
                    metadata=_md(tok), timeout=15)
    t.join(30)
    out["watch with a token of a later entry"] = held
    for name, t in bad.items():
        for i in (1, 2):
            out[f"{name} on m{i}"] = outcome(
                c.kv(i).Range, rpc_pb2.RangeRequest(key=b"/a/x"), metadata=_md(t))
    # An auth change after the token was issued: a JWT carries the old auth revision.
    root = c.auth(1).Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="rootpw"),
                                  timeout=15).token
    out["grant by root on m1"] = outcome(
        c.auth(1).RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(
            name="rw", perm={"permType": "READ", "key": b"/r"}), metadata=_md(root))
    for i in (2, 0):   # a linearizable read: this member has applied the grant
        c.auth(i).AuthStatus(rpc_pb2.AuthStatusRequest(), metadata=_md(root), timeout=15)
    for i in (2, 0):
        out[f"after change: put on m{i}"] = outcome(
            c.kv(i).Put, rpc_pb2.PutRequest(key=b"/a/y", value=b"2"), metadata=_md(tok))
    # A fresh token after the change works everywhere.
    tok2 = c.auth(2).Authenticate(rpc_pb2.AuthenticateRequest(name="alice", password="apw"),
                                  timeout=15).token
    for i in (0, 1):
        out[f"fresh token: put on m{i}"] = outcome(
            c.kv(i).Put, rpc_pb2.PutRequest(key=b"/a/z", value=b"3"), metadata=_md(tok2))
    out["wrong password"] = outcome(c.auth(1).Authenticate,
                                    rpc_pb2.AuthenticateRequest(name="alice", password="x"))
    return out


@pytest.fixture(scope="module", params=["simple", "jwt"])
def pair(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"auth-{request.param}")
    kv = _start("kvcore", str(base / "kv"), request.param)
    try:
        et = _start("etcd", str(base / "etcd"), request.param)
    except BaseException:
        kv.close()
        raise
    yield kv, et, request.param
    kv.close()
    et.close()


def test_tokens_across_members_match_etcd(pair):
    kv, et, kind = pair
    got, want = _scenario(kv), _scenario(et)
    assert got == want
    # And the scenario shows what it is meant to: the token works on every member.
    assert want["put on m1"] == want["put on m2"] == want["authorization key on m2"] == "ok"
    assert want["garbage on m1"] == ("UNAUTHENTICATED", "etcdserver: invalid auth token")
    if kind == "jwt":
        assert want["after change: put on m2"] == ("UNKNOWN", "auth: revision in header is old")


def test_revoke_during_writes_lets_nothing_through_after_it(pair):
    """Writes from alice race a revoke of her write permission: each answer is a
    success applied before the revoke or etcd's refusal, on kvcore as on etcd."""
    for c in pair[:2]:
        root = c.auth(0).Authenticate(
            rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), timeout=15).token
        c.auth(0).RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(
            name="rw", perm={"permType": "READWRITE", "key": b"/w/", "range_end": b"/w0"}),
            metadata=_md(root), timeout=15)
        tok = c.auth(1).Authenticate(
            rpc_pb2.AuthenticateRequest(name="alice", password="apw"), timeout=15).token
        results: list = []
        stop = time.monotonic() + 20

        def writer(i):
            kvs = c.kv(i % 3)
            for n in range(60):
                if time.monotonic() > stop:
                    return
                try:
                    r = kvs.Put(rpc_pb2.PutRequest(key=f"/w/{i}/{n}".encode(), value=b"v"),
                                metadata=_md(tok), timeout=15)
                    results.append(("ok", r.header.revision))
                except grpc.RpcError as e:
                    results.append(((e.code().name, e.details()), 0))

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        while len(results) < 20 and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        resp = c.auth(2).RoleRevokePermission(rpc_pb2.AuthRoleRevokePermissionRequest(
            role="rw", key=b"/w/", range_end=b"/w0"), metadata=_md(root), timeout=15)
        revoked_at = resp.header.revision
        for t in threads:
            t.join(30)
        allowed = {"ok", ("PERMISSION_DENIED", "etcdserver: permission denied"),
                   ("UNKNOWN", "auth: revision in header is old")}
        kinds = {r for r, _ in results}
        assert kinds <= allowed, (c.members[0].kind, kinds)
        late = [rev for r, rev in results if r == "ok" and rev > revoked_at]
        assert not late, (c.members[0].kind, revoked_at, late)
        assert ("PERMISSION_DENIED", "etcdserver: permission denied") in kinds or \
            ("UNKNOWN", "auth: revision in header is old") in kinds
