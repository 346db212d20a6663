"""The proxy's range cache, as etcd's proxy/grpcproxy/cache: responses to range
requests at the current revision (revision 0), keyed by the request with
serializable set, answered to later *serializable* ranges until a write through this
proxy overlaps them; LRU of 2,048 entries. Writes that bypass the proxy are not seen
(serializable reads may be stale, as through etcd's proxy)."""
from __future__ import annotations

import collections
from typing import Optional

from kvcore.api import rpc_pb2

MAX_ENTRIES = 2048          # cache.DefaultMaxEntries


def _interval(key: bytes, end: bytes) -> tuple:
    """[start, end) of a range request; end None means "to the last key"."""
    if not end:
        return key, key + b"\0"
    if end == b"\0":
        return key, None
    return key, end


def _overlap(a: tuple, b: tuple) -> bool:
    return (a[1] is None or b[0] < a[1]) and (b[1] is None or a[0] < b[1])


class RangeCache:
    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max = max_entries
        self.lru: collections.OrderedDict = collections.OrderedDict()  # key -> bytes
        self.intervals: dict = {}        # cache key -> interval (revision-0 requests)
        self.compacted_rev = -1

    @staticmethod
    def key(req: rpc_pb2.RangeRequest) -> bytes:
        r = rpc_pb2.RangeRequest()
        r.CopyFrom(req)
        r.serializable = True
        return r.SerializeToString(deterministic=True)

    def get(self, req: rpc_pb2.RangeRequest) -> Optional[bytes]:
        """The cached response, None on a miss; raises LookupError when the request's
        revision is compacted (answered from the cache as etcd's proxy does)."""
        k = self.key(req)
        if 0 < req.revision < self.compacted_rev:
            self._drop(k)
            raise LookupError("compacted")
        resp = self.lru.get(k)
        if resp is not None:
            self.lru.move_to_end(k)
        return resp

    def add(self, req: rpc_pb2.RangeRequest, resp: bytes) -> None:
        if req.revision <= self.compacted_rev:
            return
        k = self.key(req)
        self.lru[k] = resp
        self.lru.move_to_end(k)
        while len(self.lru) > self.max:
            old, _ = self.lru.popitem(last=False)
            self.intervals.pop(old, None)
        if req.revision == 0:
            self.intervals[k] = _interval(req.key, req.range_end)

    def invalidate(self, key: bytes, end: bytes = b"") -> None:
        iv = _interval(key, end)
        for k in [k for k, other in self.intervals.items() if _overlap(iv, other)]:
            self._drop(k)

    def after_txn(self, txn: rpc_pb2.TxnRequest, resp: rpc_pb2.TxnResponse) -> None:
        """etcd's kvProxy.Txn: the compared ranges are invalidated (the txn may have
        seen them newer), then the taken branch's writes invalidate and its ranges
        are cached."""
        for cmp in txn.compare:
            self.invalidate(cmp.key, cmp.range_end)
        ops = txn.success if resp.succeeded else txn.failure
        for op, r in zip(ops, resp.responses):
            kind = r.WhichOneof("response")
            if kind == "response_put":
                self.invalidate(op.request_put.key)
            elif kind == "response_delete_range":
                self.invalidate(op.request_delete_range.key, op.request_delete_range.range_end)
            elif kind == "response_range":
                self.add(op.request_range, r.response_range.SerializeToString())

    def compact(self, revision: int) -> None:
        self.compacted_rev = max(self.compacted_rev, revision)

    def _drop(self, k: bytes) -> None:
        self.lru.pop(k, None)
        self.intervals.pop(k, None)

    def __len__(self) -> int:
        return len(self.lru)
