"""Send one auth-fuzzer step to kvcore and to etcd 3.5.1 as a given user, and make the
answers comparable.

Each server is an ``AuthSide``: one channel, and the token it issued to each user
(a client keeps a token per user per server; a token is dropped when the server
says it is invalid, and the next call authenticates again). Answers are as in
tests/fuzz/diff.py, with these normalised, each for its reason:
- header cluster_id, member_id, raft_term (diff.normalise): differ by construction;
- AuthenticateResponse.token: random letters (simple tokens) chosen per server;
- HashResponse.hash: a hash of the whole backend file (bbolt's pages in etcd, LMDB's
  in kvcore), which no two stores share; HashKV, the hash of the keys, is compared;
- HashKVResponse.hash_revision: a field etcd added in 3.5.6 (its corruption check
  reads it); 3.5.1 does not send it, kvcore does;
- LeaseTimeToLiveResponse: the TTL left runs with the clock (diff._ttl_view).
"""
from __future__ import annotations

from typing import Optional

import grpc
from google.protobuf import text_format

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests.fuzz import diff

TIMEOUT = diff.TIMEOUT
TOKEN_INVALID = ("error", "UNAUTHENTICATED", "etcdserver: invalid auth token")

_SERVICES = {"KV": ("Range", "Put", "DeleteRange", "Txn", "Compact"),
             "Lease": ("LeaseGrant", "LeaseRevoke", "LeaseTimeToLive"),
             "Maintenance": ("Hash", "HashKV", "Alarm", "Defragment", "Status", "Snapshot")}


class _Bound:
    """A stub whose every call carries the token (as etcd clients send it: the
    ``token`` metadata)."""

    def __init__(self, stub, token: Optional[str]):
        self._stub = stub
        self._md = [("token", token)] if token else None

    def __getattr__(self, name):
        fn = getattr(self._stub, name)
        return lambda *a, **kw: fn(*a, metadata=self._md, **kw)


class AuthSide:
    def __init__(self, endpoint: str):
        self.channel = grpc.insecure_channel(endpoint)
        self.stubs = {"KV": rpc_pb2_grpc.KVStub(self.channel),
                      "Lease": rpc_pb2_grpc.LeaseStub(self.channel),
                      "Maintenance": rpc_pb2_grpc.MaintenanceStub(self.channel),
                      "Auth": rpc_pb2_grpc.AuthStub(self.channel),
                      "Watch": rpc_pb2_grpc.WatchStub(self.channel)}
        self.tokens: dict[str, str] = {}

    def service(self, method: str) -> str:
        for svc, methods in _SERVICES.items():
            if method in methods:
                return svc
        return "Auth"

    def as_token(self, token: Optional[str]) -> "_TokenView":
        return _TokenView(self, token)

    def close(self):
        self.channel.close()


class _TokenView:
    """What tests/fuzz/diff.py's watch helper needs of a side: ``watch``, bound."""

    def __init__(self, side: AuthSide, token: Optional[str]):
        self.watch = _Bound(side.stubs["Watch"], token)


def normalise(resp):
    if isinstance(resp, rpc_pb2.AuthenticateResponse) and resp.token:
        resp.token = "<token>"
    if isinstance(resp, rpc_pb2.HashResponse):
        resp.hash = 0
    if isinstance(resp, rpc_pb2.HashKVResponse):
        resp.hash_revision = 0
    return diff.normalise(resp)


def call(side: AuthSide, token: Optional[str], method: str, req):
    """-> (answer, raw response or None)."""
    stub = _Bound(side.stubs[side.service(method)], token)
    if method == "Snapshot":
        return _snapshot(stub, req), None
    try:
        resp = getattr(stub, method)(req, timeout=TIMEOUT)
    except grpc.RpcError as e:
        return ("error", e.code().name, e.details()), None
    if method == "LeaseTimeToLive":
        resp = diff._ttl_view(resp)
    shown = type(resp)()
    shown.CopyFrom(resp)
    return ("ok", text_format.MessageToString(normalise(shown), as_utf8=False)), resp


def _snapshot(stub, req):
    """A snapshot's first message is enough to tell taken from refused (its bytes are
    the backend file: bbolt's in etcd, kvcore's own)."""
    call = stub.Snapshot(req, timeout=TIMEOUT)
    try:
        next(call)
        return ("ok", "snapshot")
    except grpc.RpcError as e:
        return ("error", e.code().name, e.details())
    finally:
        call.cancel()


def revision(side: AuthSide) -> int:
    """The current revision (Status needs no permission, auth on or off)."""
    return side.stubs["Maintenance"].Status(rpc_pb2.StatusRequest(),
                                            timeout=TIMEOUT).header.revision


# ---- etcd 3.5.1's txn permission gaps (fixed in later etcd, and in kvcore) ----
# etcd 3.5.1 checks neither the compares and ops of a nested txn, nor a txn put's
# prev_kv (read) and lease (write of the lease's keys); 3.5.28 and 3.5.30 added
# those checks (etcd commits 204097b and 70a2b48), and kvcore makes them. A txn that
# needs one of them is sent to kvcore alone (etcd 3.5.1 would apply it): kvcore must
# refuse it. Whether it needs one is asked of etcd with requests that cannot write.

AUTH_REFUSALS = {("PERMISSION_DENIED", "etcdserver: permission denied"),
                 ("INVALID_ARGUMENT", "etcdserver: user name is empty"),
                 ("UNKNOWN", "auth: revision in header is old")}
READ, WRITE, LEASE = "read", "write", "lease"


def later_checks(t: rpc_pb2.TxnRequest, depth: int = 0) -> list:
    """(READ|WRITE, key, range_end) or (LEASE, id, None): what later etcd checks in
    ``t`` and etcd 3.5.1 does not."""
    out = []
    if depth:
        out += [(READ, c.key, c.range_end) for c in t.compare]
    for op in list(t.success) + list(t.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            q = op.request_put
            if depth:
                out.append((WRITE, q.key, b""))
            if q.prev_kv:
                out.append((READ, q.key, b""))
            if q.lease:
                out.append((LEASE, q.lease, None))
        elif kind == "request_range" and depth:
            out.append((READ, op.request_range.key, op.request_range.range_end))
        elif kind == "request_delete_range" and depth:
            q = op.request_delete_range
            out.append((WRITE, q.key, q.range_end))
            if q.prev_kv:
                out.append((READ, q.key, q.range_end))
        elif kind == "request_txn":
            out += later_checks(op.request_txn, depth + 1)
    return out


def permitted(side: AuthSide, token: Optional[str], want: str, key: bytes, end: bytes) -> bool:
    """Whether the token's user may read (a compare) or write (a delete in the branch
    not taken) the range, asked of ``side`` without changing anything."""
    if want == READ:
        req = rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=key, range_end=end)])
    else:
        req = rpc_pb2.TxnRequest(failure=[rpc_pb2.RequestOp(
            request_delete_range=rpc_pb2.DeleteRangeRequest(key=key, range_end=end))])
    ans, _ = call(side, token, "Txn", req)
    return ans[0] == "ok" or (ans[1], ans[2]) not in AUTH_REFUSALS


def lease_keys(side: AuthSide, lease: int) -> list:
    """The keys attached to ``lease`` (etcd 3.5.1's LeaseTimeToLive asks no token)."""
    ans, resp = call(side, None, "LeaseTimeToLive",
                     rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=True))
    return list(resp.keys) if resp is not None and resp.TTL >= 0 else []


def needs_later_checks(side: AuthSide, token: Optional[str], t: rpc_pb2.TxnRequest) -> bool:
    """Whether a check etcd 3.5.1 skips would refuse ``t`` for this token."""
    for want, key, end in later_checks(t):
        if want == LEASE:
            if not all(permitted(side, token, WRITE, k, b"") for k in lease_keys(side, key)):
                return True
        elif not permitted(side, token, want, key, end):
            return True
    return False
