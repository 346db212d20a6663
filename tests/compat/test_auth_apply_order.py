"""An auth change that lands between a request's arrival and its apply (or read), on a
3-member kvcore cluster and a 3-member etcd 3.5.1 cluster, same outcomes and errors.

The order is forced the same way on both: a follower is stopped (SIGSTOP, its
whole process group) with a request already sent to it, the auth change is made
through the leader (which still has a quorum), and the follower resumes. It then
handles the request after the change was committed, in whichever order it learns
of the two: the answer must not depend on that order.

- A Put sent with no token while auth is off, with ``auth enable`` committed before
  it is applied: etcd stamps each proposal with the caller's auth revision (0 with
  auth off) and refuses it at apply, "etcdserver: user name is empty".
- A linearizable Range (and a read-only Txn) of alice's, with her read permission
  revoked meanwhile: etcd checks the permission once the read index is reached, so
  the read is refused (simple token: "permission denied"; a JWT names the auth
  revision it was issued at: "auth: revision in header is old").
"""
import os
import signal
import threading
import time

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers
from tests.compat.test_auth_cluster import _rsa_pem

ETCD351 = "/opt/etcd351/bin/etcd"


def _md(token):
    return (("token", token),) if token else None


def outcome(fn, req, token=None):
    try:
        fn(req, metadata=_md(token), timeout=30)
        return "ok"
    except grpc.RpcError as e:
        return (e.code().name, e.details())


class Cluster:
    def __init__(self, kind, base, token_kind):
        extra = []
        if token_kind == "jwt":
            os.makedirs(base, exist_ok=True)
            priv, pub = os.path.join(base, "jwt.key"), os.path.join(base, "jwt.pub")
            _rsa_pem(priv, pub)
            extra = ["--auth-token",
                     f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"]
        self.members = servers.start_cluster(
            base, n=3, extra=tuple(extra), etcd_binary=ETCD351 if kind == "etcd" else None)
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{m.port}") for m in self.members]
        deadline = time.monotonic() + 30
        while not all(m.etcdctl("endpoint", "health", timeout=15)[0] == 0 for m in self.members):
            assert time.monotonic() < deadline, "cluster not healthy"
            time.sleep(0.2)
        leader = servers.leader_of(self.members)
        self.lead = self.members.index(leader)
        self.follower = (self.lead + 1) % 3

    def kv(self, i):
        return rpc_pb2_grpc.KVStub(self.channels[i])

    def auth(self, i):
        return rpc_pb2_grpc.AuthStub(self.channels[i])

    def ctl(self, *args):
        rc, out, err = self.members[self.lead].etcdctl(*args)
        assert rc == 0, (args, out, err)

    def while_stopped(self, i, call, change):
        """Send ``call`` to member i while it is stopped, run ``change`` meanwhile,
        resume it: -> what the call answered."""
        rpc_pb2_grpc.MaintenanceStub(self.channels[i]).Status(
            rpc_pb2.StatusRequest(), timeout=15)   # the connection is up before the stop
        pgid = self.members[i].proc.pid
        got = []
        os.killpg(pgid, signal.SIGSTOP)
        try:
            t = threading.Thread(target=lambda: got.append(call()))
            t.start()
            time.sleep(0.3)   # the request is in the stopped member's socket
            change()
        finally:
            os.killpg(pgid, signal.SIGCONT)
        t.join(60)
        return got[0] if got else "no answer"

    def close(self):
        for c in self.channels:
            c.close()
        for m in self.members:
            m.stop()


def scenario(c: Cluster) -> dict:
    out = {}
    for args in [("user", "add", "root:rootpw"), ("role", "add", "root"),
                 ("user", "grant-role", "root", "root"), ("user", "add", "alice:apw"),
                 ("role", "add", "rw"),
                 ("role", "grant-permission", "rw", "readwrite", "/a/", "--prefix"),
                 ("user", "grant-role", "alice", "rw")]:
        c.ctl(*args)
    f = c.follower
    # 1. a Put proposed while auth is off, applied after auth enable
    out["put sent before auth enable"] = c.while_stopped(
        f, lambda: outcome(c.kv(f).Put, rpc_pb2.PutRequest(key=b"/a/early", value=b"1")),
        lambda: c.ctl("auth", "enable"))
    root = c.auth(c.lead).Authenticate(
        rpc_pb2.AuthenticateRequest(name="root", password="rootpw"), timeout=15).token
    got = c.kv(c.lead).Range(rpc_pb2.RangeRequest(key=b"/a/early"), metadata=_md(root),
                             timeout=15)
    out["early put written"] = got.count
    # 2. reads whose permission is revoked while they wait
    c.kv(c.lead).Put(rpc_pb2.PutRequest(key=b"/a/k", value=b"v"), metadata=_md(root),
                     timeout=15)
    alice = c.auth(c.lead).Authenticate(
        rpc_pb2.AuthenticateRequest(name="alice", password="apw"), timeout=15).token
    out["range before"] = outcome(c.kv(f).Range, rpc_pb2.RangeRequest(key=b"/a/k"), alice)
    read_txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_range=rpc_pb2.RangeRequest(key=b"/a/k"))])

    def revoke():
        c.auth(c.lead).RoleRevokePermission(rpc_pb2.AuthRoleRevokePermissionRequest(
            role="rw", key=b"/a/", range_end=b"/a0"), metadata=_md(root), timeout=15)

    def regrant():
        c.auth(c.lead).RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(
            name="rw", perm={"permType": "READWRITE", "key": b"/a/", "range_end": b"/a0"}),
            metadata=_md(root), timeout=15)
    out["linearizable range, revoked meanwhile"] = c.while_stopped(
        f, lambda: outcome(c.kv(f).Range, rpc_pb2.RangeRequest(key=b"/a/k"), alice), revoke)
    regrant()
    alice = c.auth(c.lead).Authenticate(
        rpc_pb2.AuthenticateRequest(name="alice", password="apw"), timeout=15).token
    out["read-only txn, revoked meanwhile"] = c.while_stopped(
        f, lambda: outcome(c.kv(f).Txn, read_txn, alice), revoke)
    return out


@pytest.mark.parametrize("token_kind", ["simple", "jwt"])
def test_auth_change_between_arrival_and_apply_matches_etcd(tmp_path, token_kind):
    def run(kind, attempt=""):
        c = Cluster(kind, str(tmp_path / f"{kind}{attempt}"), token_kind)
        try:
            return scenario(c)
        finally:
            c.close()
    got, want = run("kvcore"), run("etcd")
    for again in range(3):
        if got == want:
            break
        # etcd 3.5.1 itself answered one step differently in about one run of five
        # here (an early Put written, a JWT read-only Txn served; not understood;
        # twice in a row once in CI): its run is repeated up to three times,
        # kvcore's never.
        want = run("etcd", f"-again{again}")
    assert got == want
    # and the scenario shows what it is meant to
    assert want["put sent before auth enable"] == (
        "INVALID_ARGUMENT", "etcdserver: user name is empty")
    assert want["early put written"] == 0
    assert want["range before"] == "ok"
    refused = ("PERMISSION_DENIED", "etcdserver: permission denied") if token_kind == "simple" \
        else ("UNKNOWN", "auth: revision in header is old")
    assert want["linearizable range, revoked meanwhile"] == refused
    assert want["read-only txn, revoked meanwhile"] == refused
