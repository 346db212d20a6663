"""Reads with auth on, which a kvcore worker checks itself (kvcore/worker/authview.py),
against etcd 3.5.1 with the same flags: the same answers right after each change of
permissions, users and passwords, and a simple token kept alive by reads alone
(--auth-token-ttl 2) and lapsing when idle.

The worker reuses what the core said of a token for at most a quarter of the TTL and
only at the auth revision the core answered at; a bug there shows here as a read
allowed after a revoke, a token still good after its password changed, or a token
that lapses while it is being used.
"""
from __future__ import annotations

import time

import grpc
import pytest

from kvcore.api import auth_pb2, rpc_pb2, rpc_pb2_grpc
from tests import etcd351, servers

TTL = 2
FLAGS = ("--bcrypt-cost", "4", "--auth-token-ttl", str(TTL))


class Side:
    def __init__(self, srv: servers.Server):
        self.channel = grpc.insecure_channel(srv.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.auth = rpc_pb2_grpc.AuthStub(self.channel)
        self.root = self.login("root", "rootpw")

    def login(self, user: str, password: str) -> str:
        return self.auth.Authenticate(rpc_pb2.AuthenticateRequest(
            name=user, password=password), timeout=10).token

    def admin(self, method: str, req) -> None:
        getattr(self.auth, method)(req, metadata=[("token", self.root)], timeout=10)

    def get(self, token: str, key: bytes, serializable: bool):
        """The outcome of a Range as ``token``: the values read, or the error."""
        try:
            r = self.kv.Range(rpc_pb2.RangeRequest(key=key, serializable=serializable),
                              metadata=[("token", token)], timeout=10)
            return [(kv.key, kv.value) for kv in r.kvs]
        except grpc.RpcError as e:
            return (e.code().name, e.details())


@pytest.fixture
def sides(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2, extra=FLAGS)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD, extra=FLAGS)
    except BaseException:
        kv.stop()
        raise
    try:
        for srv in (kv, et):
            for args in (("user", "add", "root:rootpw"), ("user", "add", "u:upw"),
                         ("role", "add", "r"), ("user", "grant-role", "u", "r"),
                         ("role", "grant-permission", "r", "read", "a"),
                         ("put", "a", "1"), ("put", "b", "2"), ("auth", "enable")):
                rc, _, err = srv.etcdctl(*args)
                assert rc == 0, err
        out = {"kvcore": Side(kv), "etcd": Side(et)}
        yield out
        for s in out.values():
            s.channel.close()
    finally:
        kv.stop()
        et.stop()


def both(sides, fn):
    """fn(side, name) on each server; kvcore's answer, asserted equal to etcd's."""
    got = {name: fn(s, name) for name, s in sides.items()}
    assert got["kvcore"] == got["etcd"], got
    return got["kvcore"]


def reads(s: Side, token: str):
    return [s.get(token, k, ser) for k in (b"a", b"b") for ser in (True, False)]


DENIED = ("PERMISSION_DENIED", "etcdserver: permission denied")
INVALID = ("UNAUTHENTICATED", "etcdserver: invalid auth token")


def test_changes_are_seen_by_the_next_read(sides):
    tok = {n: s.login("u", "upw") for n, s in sides.items()}
    got = both(sides, lambda s, n: reads(s, tok[n]))
    assert got == [[(b"a", b"1")], [(b"a", b"1")], DENIED, DENIED]

    perm_a = auth_pb2.Permission(permType=auth_pb2.Permission.READ, key=b"a")
    steps = [
        ("revoke a", "RoleRevokePermission",
         rpc_pb2.AuthRoleRevokePermissionRequest(role="r", key=b"a"),
         [DENIED, DENIED, DENIED, DENIED]),
        ("grant a", "RoleGrantPermission",
         rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=perm_a),
         [[(b"a", b"1")], [(b"a", b"1")], DENIED, DENIED]),
        ("grant b", "RoleGrantPermission",
         rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=auth_pb2.Permission(
             permType=auth_pb2.Permission.READ, key=b"b")),
         [[(b"a", b"1")], [(b"a", b"1")], [(b"b", b"2")], [(b"b", b"2")]]),
        ("revoke role", "UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name="u", role="r"),
         [DENIED, DENIED, DENIED, DENIED]),
        ("grant role", "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"),
         [[(b"a", b"1")], [(b"a", b"1")], [(b"b", b"2")], [(b"b", b"2")]]),
        # a changed password invalidates the user's tokens at once
        ("password", "UserChangePassword",
         rpc_pb2.AuthUserChangePasswordRequest(name="u", password="upw2"), [INVALID] * 4),
    ]
    for what, method, req, want in steps:
        for s in sides.values():
            s.admin(method, req)
        got = both(sides, lambda s, n: reads(s, tok[n]))
        assert got == want, what

    tok = {n: s.login("u", "upw2") for n, s in sides.items()}
    assert both(sides, lambda s, n: s.get(tok[n], b"a", True)) == [(b"a", b"1")]
    for s in sides.values():
        s.admin("UserDelete", rpc_pb2.AuthUserDeleteRequest(name="u"))
    assert both(sides, lambda s, n: reads(s, tok[n])) == [INVALID] * 4


def test_a_simple_token_lives_while_reads_use_it(sides):
    tok = {n: s.login("u", "upw") for n, s in sides.items()}
    # Reads only, every TTL/5, for four TTLs: every one is answered.
    deadline = time.monotonic() + 4 * TTL
    rounds = 0
    while time.monotonic() < deadline:
        assert both(sides, lambda s, n: s.get(tok[n], b"a", True)) == [(b"a", b"1")]
        rounds += 1
        time.sleep(TTL / 5)
    assert rounds >= 15
    # Unused for twice the TTL: gone on both (etcd sweeps its tokens every second).
    time.sleep(2 * TTL + 1.5)
    assert both(sides, lambda s, n: s.get(tok[n], b"a", True)) == INVALID
