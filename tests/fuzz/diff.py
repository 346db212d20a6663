"""Send one request to kvcore and to etcd 3.5.1 and make the answers comparable.

An answer is ("error", status code name, message) or ("ok", the response as text with
every ResponseHeader's cluster_id, member_id and raft_term cleared: those differ by
construction; the revision stays and must match). Values that depend on the clock
(remaining lease TTL) or on a server's own choice (a lease ID the server picked) are
reduced to what both must agree on.
"""
from __future__ import annotations

import queue
import threading

import grpc
from google.protobuf import text_format

from kvcore.api import kv_pb2, rpc_pb2, rpc_pb2_grpc

from tests.fuzz import gen

TIMEOUT = 15


class Side:
    """One server's stubs."""

    def __init__(self, endpoint: str):
        # A watch catch-up may be one response of many MiB (etcd batches 1,000
        # revisions whatever their size): received whole to be compared.
        self.channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_receive_message_length", 256 << 20)])
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)

    def unary(self, method: str, req):
        stub = self.lease if method.startswith("Lease") else self.kv
        return getattr(stub, method)(req, timeout=TIMEOUT)


def normalise(msg):
    """Clear the member-specific header fields, recursively, in place; a lease ID
    the server picked (granted with ID 0) becomes -1."""
    if isinstance(msg, rpc_pb2.ResponseHeader):
        msg.cluster_id = msg.member_id = msg.raft_term = 0
        return msg
    if isinstance(msg, kv_pb2.KeyValue):
        if msg.lease and msg.lease not in gen.EXPLICIT_LEASES:
            msg.lease = -1
        return msg
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, (list, tuple)) or hasattr(value, "add"):   # repeated
            for v in value:
                normalise(v)
        else:
            normalise(value)
    return msg


def text(msg) -> str:
    return text_format.MessageToString(normalise(msg), as_utf8=False)


def call(side: Side, method: str, req):
    """-> (answer, raw response or None)."""
    try:
        resp = side.unary(method, req)
    except grpc.RpcError as e:
        return ("error", e.code().name, e.details()), None
    if method == "LeaseTimeToLive":
        resp = _ttl_view(resp)
    return ("ok", text(resp)), resp


def _ttl_view(resp):
    """The remaining TTL runs with the clock: keep only whether the lease is there.
    etcd lists a lease's keys from a Go map (lessor's itemSet), in no set order:
    sorted here."""
    out = rpc_pb2.LeaseTimeToLiveResponse()
    out.CopyFrom(resp)
    out.TTL = -1 if resp.TTL < 0 else 1
    keys = sorted(out.keys)
    del out.keys[:]
    out.keys.extend(keys)
    return out


def lease_cycle(side: Side, cyc: gen.LeaseCycle) -> list:
    """Grant, attach keys, time-to-live, revoke; the ID the server picked (for ID 0)
    is replaced by 0 in the answers."""
    out = []
    ans, resp = call(side, "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=cyc.ID, TTL=cyc.TTL))
    if resp is None:
        return [ans]
    lid = resp.ID
    resp.ID = cyc.ID
    out.append(("ok", text(resp)))
    for k in cyc.keys:
        out.append(call(side, "Put", rpc_pb2.PutRequest(key=k, value=b"l", lease=lid))[0])
    ans, resp = call(side, "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True))
    if resp is not None:
        resp.ID = cyc.ID
        ans = ("ok", text(resp))
    out.append(ans)
    out.append(call(side, "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lid))[0])
    return out


class _Stream:
    """A watch stream whose responses are read by a thread, so that a read can wait
    for a bounded time."""

    def __init__(self, side: Side, create):
        self.requests: queue.Queue = queue.Queue()
        self.requests.put(rpc_pb2.WatchRequest(create_request=create))
        self.responses: queue.Queue = queue.Queue()
        self.call = side.watch.Watch(iter(self.requests.get, None), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.call:
                self.responses.put(r)
        except grpc.RpcError as e:
            self.responses.put(e)

    def next(self, timeout: float):
        try:
            r = self.responses.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(r, grpc.RpcError):
            if r.code() == grpc.StatusCode.CANCELLED:
                return None
            return ("error", r.code().name, r.details())
        return ("ok", text(r))

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def watch(kv: Side, et: Side, create, past: bool) -> tuple:
    """The first response of each; then, for a ``past`` start revision, when etcd
    sends a second one soon (the events since then, or the cancel of a compacted
    one), kvcore's second one too. Only the oracle's read is bounded by a short
    wait: kvcore gets a generous one, so a slow kvcore is not a difference."""
    ks, es = _Stream(kv, create), _Stream(et, create)
    try:
        a, b = [ks.next(TIMEOUT)], [es.next(TIMEOUT)]
        if past and a == b and b[0] is not None and b[0][0] == "ok":
            second = es.next(1.0)
            if second is not None:
                b.append(second)
                a.append(ks.next(TIMEOUT))
            # the rest of a fragmented response, up to its last fragment
            while a[-1] == b[-1] and b[-1] is not None and "fragment: true" in b[-1][1] \
                    and len(b) < 20:
                b.append(es.next(TIMEOUT))
                a.append(ks.next(TIMEOUT))
        return a, b
    finally:
        ks.close()
        es.close()


def keyspace(side: Side, rev: int):
    """The whole keyspace at ``rev`` (0: the current one)."""
    return call(side, "Range", rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00",
                                                   revision=rev))[0]
