"""The KV service: Range, Put, DeleteRange, Txn, Compact (etcd's v3rpc KV server and
its apply of the same requests, kvcore/mvcc/kvops.py).

Requests arrive checked (etcd's v3rpc checks run in the worker that decoded them,
kvcore/worker/edge.py; the in-process Lock/Election client builds valid ones), so
a Put or DeleteRange is proposed as it came, undecoded: the apply decodes it once.
"""
from __future__ import annotations

import time

from kvcore.api import rpc_pb2, wire
from kvcore.api.rules import txn_puts, txn_shape
from kvcore.auth.caller import RECHECK
from kvcore.mvcc import kvops
from kvcore.mvcc.store import CompactedError, FutureRevError, ReadView
from kvcore.server.entry import OP_COMPACT, OP_DELETE, OP_PUT, OP_TXN
from kvcore.services.registry import always

KV = "/etcdserverpb.KV/"


class KVService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.applier = None   # kvops.KVApplier over the current store and lessor

    def register(self, reg) -> None:
        reg.unary_handler(KV + "Range", self.range)
        reg.unary_handler(KV + "Put", self.put)
        reg.unary_handler(KV + "DeleteRange", self.delete_range)
        reg.unary_handler(KV + "Txn", self.txn)
        reg.unary_handler(KV + "Compact", self.compact)
        reg.applier(OP_PUT, self.apply_put, capped=always)
        reg.applier(OP_DELETE, self.apply_delete)
        reg.applier(OP_TXN, self.apply_txn, capped=_txn_capped)
        reg.applier(OP_COMPACT, self.apply_compact)
        reg.state_opened(self._state_opened)

    def _state_opened(self) -> None:
        self.applier = kvops.KVApplier(self.ctx.store, self.ctx.lessor)

    # ---- handlers ----

    def range(self, req: bytes):
        return self.range_request(rpc_pb2.RangeRequest.FromString(req))

    def range_request(self, r: rpc_pb2.RangeRequest):
        """Range of a decoded (and checked) request."""
        ctx = self.ctx
        ctx.metrics.ranges += 1

        def serve():
            rev, body = ctx.read(lambda view: self.applier.range(view, r))
            return wire.with_header(ctx.header(rev), body)
        return serve() if r.serializable else ctx.linearizable(_rechecked(serve))

    def put(self, req: bytes):
        return self.ctx.quota.check(len(req)) or self.ctx.propose(OP_PUT, req)

    def delete_range(self, req: bytes):
        return self.ctx.propose(OP_DELETE, req)

    def txn(self, req: bytes):
        ctx = self.ctx
        if wire.txn_plain_puts(req) is not None:
            # Nothing but plain puts (the common write Txn): proposed as it is, and
            # the apply reads it the same way, without protobuf.
            return ctx.quota.check(len(req)) or ctx.propose(OP_TXN, req)
        r = rpc_pb2.TxnRequest.FromString(req)
        readonly, serializable, puts = txn_shape(r)
        if readonly:
            def serve():
                rev, body = ctx.read(lambda view: self.applier.txn(ReadOnlyTxn(view), r))
                return wire.with_header(ctx.header(rev), body)
            return serve() if serializable else ctx.linearizable(_rechecked(serve))
        # The decoded request goes with the proposal: this member's apply uses it
        # instead of decoding the entry again (other members decode it once).
        return (puts and ctx.quota.check(len(req))) or ctx.propose(OP_TXN, req, r)

    def compact(self, req: bytes):
        rpc_pb2.CompactionRequest.FromString(req)   # what cannot parse is not proposed
        return self.ctx.propose(OP_COMPACT, req)

    # ---- appliers ----

    def apply_put(self, txn, w, req: bytes):
        r = rpc_pb2.PutRequest.FromString(req)
        value = r.value   # read once: every read of the field copies it
        m = self.ctx.metrics
        m.puts += 1
        m.put_size += len(r.key) + len(value)
        return self.applier.put(w, r, value)

    def apply_delete(self, txn, w, req: bytes):
        self.ctx.metrics.deletes += 1
        return self.applier.delete_range(w, rpc_pb2.DeleteRangeRequest.FromString(req))

    def apply_txn(self, txn, w, req):
        """``req``: the entry's bytes, or the TxnRequest this member proposed."""
        self.ctx.metrics.txns += 1
        if isinstance(req, bytes):
            puts = wire.txn_plain_puts(req)
            if puts is not None:
                return self.applier.txn_puts(w, puts)
            req = rpc_pb2.TxnRequest.FromString(req)
        return self.applier.txn(w, req)

    def apply_compact(self, txn, w, req: bytes):
        ctx = self.ctx
        r = rpc_pb2.CompactionRequest.FromString(req)
        t0 = time.perf_counter()
        try:
            removed = ctx.store.compact(txn, r.revision)
        except (CompactedError, FutureRevError) as e:
            raise kvops.mvcc_error(e)
        ctx.metrics.compacted(time.perf_counter() - t0, removed)
        if ctx.watch_hub.unsynced:
            ctx.schedule_catch_up()
        return ctx.store.current_rev, b""


def _rechecked(serve):
    """A linearizable read, served once its index is reached after the caller's
    permission is checked again (auth on): the auth store may have changed while
    it waited, and etcd checks only then."""
    recheck = RECHECK.get()
    if recheck is None:
        return serve

    def checked_serve():
        recheck()
        return serve()
    return checked_serve


def _txn_capped(req) -> bool:
    return txn_puts(rpc_pb2.TxnRequest.FromString(req) if isinstance(req, bytes) else req)


class ReadOnlyTxn:
    """Lets a read-only Txn run on a ReadView through the same applier code."""

    def __init__(self, view: ReadView):
        self.view = view
        self.begin_rev = view.rev
        self.changes: list = []
        self.rev = view.rev

    def range(self, key, end, rev=0, limit=0, count_only=False):
        return self.view.range(key, end, rev, limit, count_only)


def register(ctx, reg) -> KVService:
    s = KVService(ctx)
    s.register(reg)
    return s
