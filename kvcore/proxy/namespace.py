"""``--namespace``: every key the proxy sends up is prefixed and every key it answers
with is stripped, as etcd's proxy does by wrapping its client's KV, Watcher and Lease
in clientv3/namespace. Only those three are wrapped there: the Lock and Election
services' calls go up on the raw connection, so the names in those RPCs are *not*
prefixed (nor are Auth, Maintenance or Cluster calls), and kvcore's proxy does the
same. (etcdctl's lock and elect are recipes over KV and Watch: namespaced.)

Messages cross as bytes; only the paths below are decoded and re-encoded.
"""
from __future__ import annotations

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error

KV = "/etcdserverpb.KV/"
WATCH = "/etcdserverpb.Watch/Watch"
TIME_TO_LIVE = "/etcdserverpb.Lease/LeaseTimeToLive"


def prefix_interval(pfx: bytes, key: bytes, end: bytes) -> tuple:
    """clientv3/namespace prefixInterval: "\\0" as range end (to the last key) becomes
    the end of the namespace; any other end is prefixed like the key."""
    if end == b"\0":
        pend = bytearray(pfx)
        for i in range(len(pend) - 1, -1, -1):      # +1 with carry; 0xff wraps to 0
            pend[i] = (pend[i] + 1) & 0xff
            if pend[i]:
                return pfx + key, bytes(pend)
        return pfx + key, b"\0"                   # 0xff..ff: to the last key
    return pfx + key, (pfx + end) if end else b""


class Namespace:
    def __init__(self, prefix: str):
        self.pfx = prefix.encode()
        self.n = len(self.pfx)
        self._req = {KV + "Range": self._range, KV + "Put": self._put,
                     KV + "DeleteRange": self._delete, KV + "Txn": self._txn,
                     WATCH: self._watch_request}
        self._resp = {KV + "Range": (rpc_pb2.RangeResponse, self._strip_range),
                      KV + "Put": (rpc_pb2.PutResponse, self._strip_put),
                      KV + "DeleteRange": (rpc_pb2.DeleteRangeResponse, self._strip_delete),
                      KV + "Txn": (rpc_pb2.TxnResponse, self._strip_txn),
                      WATCH: (rpc_pb2.WatchResponse, self._strip_watch),
                      TIME_TO_LIVE: (rpc_pb2.LeaseTimeToLiveResponse, self._strip_ttl)}
        self.paths = frozenset(self._req) | frozenset(self._resp)

    # ---- requests ----

    def request(self, path: str, raw: bytes) -> bytes:
        f = self._req.get(path)
        return raw if f is None else f(raw)

    def _interval(self, msg) -> None:
        msg.key, msg.range_end = prefix_interval(self.pfx, msg.key, msg.range_end)

    def _checked(self, cls, raw):
        msg = cls.FromString(raw)
        if not msg.key:                  # namespace kvPrefix.Do refuses an empty key
            raise etcd_error(EtcdError.EMPTY_KEY)
        return msg

    def _range(self, raw: bytes) -> bytes:
        msg = self._checked(rpc_pb2.RangeRequest, raw)
        self._interval(msg)
        return msg.SerializeToString()

    def _put(self, raw: bytes) -> bytes:
        msg = self._checked(rpc_pb2.PutRequest, raw)
        msg.key = self.pfx + msg.key
        return msg.SerializeToString()

    def _delete(self, raw: bytes) -> bytes:
        msg = self._checked(rpc_pb2.DeleteRangeRequest, raw)
        self._interval(msg)
        return msg.SerializeToString()

    def _txn(self, raw: bytes) -> bytes:
        msg = rpc_pb2.TxnRequest.FromString(raw)
        self._prefix_txn(msg)
        return msg.SerializeToString()

    def _prefix_txn(self, txn) -> None:
        for c in txn.compare:
            self._interval(c)
        for op in list(txn.success) + list(txn.failure):
            kind = op.WhichOneof("request")
            if kind == "request_range":
                self._interval(op.request_range)
            elif kind == "request_put":
                op.request_put.key = self.pfx + op.request_put.key
            elif kind == "request_delete_range":
                self._interval(op.request_delete_range)
            elif kind == "request_txn":
                self._prefix_txn(op.request_txn)

    def _watch_request(self, raw: bytes) -> bytes:
        msg = rpc_pb2.WatchRequest.FromString(raw)
        if msg.WhichOneof("request_union") != "create_request":
            return raw
        self._interval(msg.create_request)
        return msg.SerializeToString()

    # ---- responses ----

    def response(self, path: str, raw: bytes) -> bytes:
        entry = self._resp.get(path)
        if entry is None:
            return raw
        cls, strip = entry
        msg = cls.FromString(raw)
        return msg.SerializeToString() if strip(msg) else raw

    def _strip_kvs(self, kvs) -> bool:
        for kv in kvs:
            kv.key = kv.key[self.n:]
        return len(kvs) > 0

    def _strip_range(self, r) -> bool:
        return self._strip_kvs(r.kvs)

    def _strip_put(self, r) -> bool:
        if r.HasField("prev_kv"):
            r.prev_kv.key = r.prev_kv.key[self.n:]
            return True
        return False

    def _strip_delete(self, r) -> bool:
        return self._strip_kvs(r.prev_kvs)

    def _strip_txn(self, r) -> bool:
        changed = False
        for op in r.responses:
            kind = op.WhichOneof("response")
            if kind == "response_range":
                changed |= self._strip_range(op.response_range)
            elif kind == "response_put":
                changed |= self._strip_put(op.response_put)
            elif kind == "response_delete_range":
                changed |= self._strip_delete(op.response_delete_range)
            elif kind == "response_txn":
                changed |= self._strip_txn(op.response_txn)
        return changed

    def _strip_watch(self, r) -> bool:
        for ev in r.events:
            ev.kv.key = ev.kv.key[self.n:]
            if ev.HasField("prev_kv"):
                ev.prev_kv.key = ev.kv.key       # as namespace/watch.go
        return len(r.events) > 0

    def _strip_ttl(self, r) -> bool:
        """Attached keys outside the namespace are dropped, the others stripped."""
        if not r.keys:
            return False
        keys = [k[self.n:] for k in r.keys if k[:self.n] == self.pfx]
        del r.keys[:]
        r.keys.extend(keys)
        return True
