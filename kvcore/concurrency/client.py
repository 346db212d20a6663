"""The in-process client the Lock and Election services run on.

It calls the core's own unary handlers with request messages, so a write goes
through Raft (followers forward it) and a read is linearizable, exactly as a request
from outside would be; and it watches with internal watchers on the core's watch
hub, which every member feeds as it applies entries. So a lock can be taken, waited
for and released through any member of a cluster.

Contract:
* Every coroutine here runs on the core's event loop and may be cancelled; a
  cancelled call leaves nothing registered (watchers are removed in ``finally``).
* Errors are the core's ``GrpcError``s; ``run()`` reports them to the caller as
  etcd's in-process client does: status UNKNOWN, etcd's message unchanged.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Optional

from kvcore.api import rpc_pb2, rules
from kvcore.api.errors import EtcdError
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.ipc import framing
from kvcore.mvcc.watch import DELETE, Watcher

log = logging.getLogger("kvcore.concurrency")

RR = rpc_pb2.RangeRequest
DEFAULT_SESSION_TTL = 60     # concurrency.defaultSessionTTL
NO_LEASE = 0
CALLER_GONE = "caller gone"   # the cancel message of a recipe whose caller went away


def prefix_end(prefix: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: the range end that covers every key with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"   # every byte 0xff (or no prefix): to the end of the keyspace


def caller_gone(exc: asyncio.CancelledError) -> bool:
    """Whether a recipe was cancelled because its caller went away (see run())."""
    return CALLER_GONE in exc.args


def client_error(e: GrpcError) -> GrpcError:
    """A server error as a Lock/Election caller sees it from etcd: the Go client's
    rpctypes error is no gRPC status, so gRPC sends it as UNKNOWN."""
    return GrpcError(StatusCode.UNKNOWN, e.message)


def op_put(key: bytes, value: bytes, lease: int) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def op_get(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=RR(key=key))


def op_delete(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))


def first_create(prefix: bytes) -> RR:
    """Get(prefix, WithFirstCreate()...): the key under ``prefix`` created first."""
    return RR(key=prefix, range_end=prefix_end(prefix), sort_target=RR.CREATE,
              sort_order=RR.ASCEND, limit=1)


def create_rev_is(key: bytes, rev: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.CREATE,
                           result=rpc_pb2.Compare.EQUAL, create_revision=rev)


class WatchLost(Exception):
    """The hub cancelled an internal watcher (compaction overtook it).
    ``response`` is the cancelling WatchResponse."""

    def __init__(self, response):
        super().__init__("watch cancelled")
        self.response = response

    def etcd_error(self) -> GrpcError:
        """clientv3.WatchResponse.Err() for it, as the recipe's caller sees it."""
        r = self.response
        if r.compact_revision:
            return client_error(GrpcError(*EtcdError.COMPACTED))
        if r.cancel_reason:
            return GrpcError(StatusCode.UNKNOWN, r.cancel_reason)
        return client_error(GrpcError(*EtcdError.FUTURE_REV))


class HubWatch:
    """One internal watcher on the core's watch hub, read with ``await next()``.

    It offers the hub the stream interface a client's watch stream has
    (``can_send``, ``send``, ``watchers``), with room for WINDOW undelivered
    responses: past that the hub treats it as a slow watcher and catches it up from
    history once ``next()`` has made room, so it never buffers without bound."""

    WINDOW = 64

    def __init__(self, core, key: bytes, end: Optional[bytes], start_rev: int,
                 no_put: bool = False):
        self.core = core
        self.hub = core.watch_hub
        self.watchers: dict = {}
        self._queue: collections.deque = collections.deque()
        self._wake: Optional[asyncio.Future] = None
        self._closed = False
        filters = [rpc_pb2.WatchCreateRequest.NOPUT] if no_put else []
        self._w = Watcher(self, 0, key, end or b"", start_rev, False, filters, False, False)
        self.watchers[0] = self._w
        self.hub.add(self._w)
        if not self._w.synced:
            core.schedule_catch_up()   # history from start_rev first

    # ---- the hub's side ----

    def can_send(self) -> bool:
        return not self._closed and len(self._queue) < self.WINDOW

    def send(self, payload: bytes) -> None:
        wr = rpc_pb2.WatchResponse.FromString(payload)
        if wr.canceled:
            self._closed = True   # the hub has already forgotten this watcher
        self._queue.append(wr)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def send_batch(self, payloads: list) -> None:
        """The hub's batched catch-up (kvcore/mvcc/watch.py) hands several at once."""
        for p in payloads:
            self.send(p)

    def send_packed(self, payload: bytes) -> None:
        """The hub's fan-out: responses in an S_BATCH payload."""
        self.send_batch(framing.split_batch(payload))

    # ---- the reader's side ----

    async def next(self) -> rpc_pb2.WatchResponse:
        """The next WatchResponse with events; raises WatchLost if the hub cancelled
        the watcher."""
        while not self._queue:
            self._wake = self.core.loop.create_future()
            await self._wake
        was_full = len(self._queue) >= self.WINDOW
        wr = self._queue.popleft()
        if wr.canceled:
            raise WatchLost(wr)
        if was_full and not self._w.synced and not self._closed:
            self.core.schedule_catch_up()   # room again: continue from history
        return wr

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.hub.remove(self._w)
        self.watchers.clear()


class LocalClient:
    """clientv3 calls the recipes need, served by the KV and Lease services
    (kvcore/services/). Each request passes etcd's request checks first, as a real
    client's call would in the worker (kvcore/worker/edge.py). Writes are
    serialized once, for the log; a Range goes to the KV service as the message."""

    def __init__(self, ctx, kv, lease):
        self.core = ctx
        self._kv = kv
        self._lease = lease

    def run(self, coro) -> asyncio.Future:
        """Start a recipe for a unary handler: a future of its response bytes, its
        errors as etcd's in-process client reports them. Cancelling that future
        (the caller went away) cancels the recipe with CALLER_GONE, so it can clean
        up as etcd's does when the call's context ends; a recipe cancelled otherwise
        (the server stopping) leaves everything as it is."""
        task = asyncio.ensure_future(self._guard(coro))
        out = self.core.loop.create_future()

        def finished(t: asyncio.Task) -> None:
            if out.done():
                return
            if t.cancelled():
                out.cancel()
            elif t.exception() is not None:
                out.set_exception(t.exception())
            else:
                out.set_result(t.result())

        def abandoned(f: asyncio.Future) -> None:
            if f.cancelled() and not task.done():
                task.cancel(CALLER_GONE)

        task.add_done_callback(finished)
        out.add_done_callback(abandoned)
        return out

    @staticmethod
    async def _guard(coro):
        try:
            return await coro
        except GrpcError as e:
            raise client_error(e) from None

    async def _call(self, handler, msg, resp_cls, encode=True):
        res = handler(msg.SerializeToString() if encode else msg)
        if not isinstance(res, bytes):
            res = await res
        return resp_cls.FromString(res)

    async def txn(self, req: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        rules.check_txn(req, self.core.cfg.max_txn_ops)
        return await self._call(self._kv.txn, req, rpc_pb2.TxnResponse)

    async def get(self, req: RR) -> rpc_pb2.RangeResponse:
        """A linearizable Range (clientv3's default)."""
        rules.check_range(req)
        return await self._call(self._kv.range_request, req, rpc_pb2.RangeResponse,
                                encode=False)

    async def delete(self, key: bytes) -> rpc_pb2.DeleteRangeResponse:
        req = rpc_pb2.DeleteRangeRequest(key=key)
        rules.check_delete(req)
        return await self._call(self._kv.delete_range, req, rpc_pb2.DeleteRangeResponse)

    async def delete_quietly(self, key: bytes) -> None:
        """A clean-up Delete whose own failure does not matter to the caller."""
        try:
            await self.delete(key)
        except GrpcError as e:
            log.debug("clean-up delete of %r failed: %s", key, e.message)

    async def session_lease(self, lease: int) -> int:
        """The lease of concurrency.NewSession(WithLease(lease)): the given one, or
        with NoLease (0) a new lease of the default session TTL, which the server's
        session then orphans (it is not kept alive)."""
        if lease != NO_LEASE:
            return lease
        resp = await self._call(self._lease.lease_grant,
                                rpc_pb2.LeaseGrantRequest(TTL=DEFAULT_SESSION_TTL),
                                rpc_pb2.LeaseGrantResponse)
        return resp.ID

    def watch(self, key: bytes, end: Optional[bytes], start_rev: int,
              no_put: bool = False) -> HubWatch:
        return HubWatch(self.core, key, end, start_rev, no_put)

    async def to_the_end(self, coro, if_gone):
        """Await ``coro`` (a write) to its end even if the caller goes away meanwhile:
        a proposed write cannot be taken back, so ``if_gone(result)`` then runs on
        its own once it is applied, to undo it (a Lock waiter's key that would
        otherwise stay queued), and the cancellation goes on."""
        task = asyncio.ensure_future(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError as e:
            if caller_gone(e):
                async def undo():
                    await if_gone(await task)
                self.spawn(undo())
            raise

    def spawn(self, coro) -> None:
        """Run a clean-up call on its own (etcd's ``m.Unlock(client.Ctx())`` after the
        caller's context ended); its failure is only logged."""
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_log_failure)

    # ---- concurrency/key.go ----

    async def wait_delete(self, key: bytes, rev: int) -> None:
        """Until ``key`` is deleted at a revision >= ``rev``."""
        w = self.watch(key, None, rev, no_put=True)
        try:
            while True:
                try:
                    wr = await w.next()
                except WatchLost as lost:
                    raise lost.etcd_error() from None
                if any(ev.type == DELETE for ev in wr.events):
                    return
        finally:
            w.close()

    async def wait_deletes(self, prefix: bytes, max_create_rev: int) -> rpc_pb2.ResponseHeader:
        """Until no key under ``prefix`` has a create revision <= ``max_create_rev``:
        wait for the last created of them to go, then look again."""
        req = RR(key=prefix, range_end=prefix_end(prefix), sort_target=RR.CREATE,
                 sort_order=RR.DESCEND, limit=1, max_create_revision=max_create_rev)
        while True:
            resp = await self.get(req)
            if not resp.kvs:
                return resp.header
            await self.wait_delete(resp.kvs[0].key, resp.header.revision)


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("clean-up call failed: %s", task.exception())
