"""Range served inside a worker process, from its own LMDB read transaction.

Serializable reads of the current revision never leave the worker. A linearizable
read first asks the core for a read index (the core batches these behind one Raft
ReadIndex and answers with its applied index once it has applied that far), then
reads locally; on the leader of a one-voter cluster, where Raft would answer that
at once, the core's shared read state says so and the round trip is skipped
(kvcore/ipc/readstate.py). With auth on, a caller with a token is checked here too
(kvcore/worker/authview.py). Reads of a past revision, or anything this view cannot
answer, go to the core like every other request.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from kvcore.api import rpc_pb2, rules, wire
from kvcore.api.methods import METHOD_ID
from kvcore.ipc import framing as fr
from kvcore.ipc.framing import READ_INDEX_METHOD
from kvcore.mvcc.kvops import range_parts
from kvcore.mvcc.latest import LatestView, NeedsCore
from kvcore.worker.authview import AuthView
from kvcore.storage import backend as be

log = logging.getLogger("kvcore.worker")
RANGE = METHOD_ID["/etcdserverpb.KV/Range"]


class ReadIndexBatcher:
    """Read-index requests to the core, at most ``max_inflight`` at a time per worker.

    A read must not be served by a request issued before it arrived (that request
    may predate a write the read has to see), so the reads that arrive during one
    event-loop turn share one new request, sent at the end of that turn; when
    ``max_inflight`` requests are out, later reads wait and go together in the next
    one as soon as one returns (with max_inflight=1 this is etcd's
    linearizableReadLoop, per worker). Several in flight keep a read from waiting
    for the whole round trip of a request it could not use.

    Each caller gets a future of its own: a future awaited by several coroutines
    trips the engine's eager first step (asyncio's blocking flag is per future)."""

    def __init__(self, ask, max_inflight: int = 4):
        self._ask = ask
        self._max = max_inflight
        self._inflight = 0
        self._waiting = []          # callers no request has been sent for yet
        self._scheduled = False

    def get(self):
        loop = asyncio.get_event_loop()
        fut = loop.create_future()
        self._waiting.append(fut)
        if not self._scheduled and self._inflight < self._max:
            self._scheduled = True
            loop.call_soon(self._send)
        return fut

    def _send(self) -> None:
        self._scheduled = False
        if not self._waiting or self._inflight >= self._max:
            return
        callers, self._waiting = self._waiting, []
        self._inflight += 1
        self._ask().add_done_callback(lambda f: self._done(f, callers))

    def _done(self, f, callers) -> None:
        self._inflight -= 1
        for c in callers:
            if c.done():
                continue
            if f.cancelled():
                c.cancel()
            elif f.exception() is not None:
                c.set_exception(f.exception())
            else:
                c.set_result(f.result())
        if self._waiting and not self._scheduled:
            self._send()   # they all arrived before this moment


class LocalReads:
    def __init__(self, client, db_path: str, map_size: int, read_state=None):
        self.client = client
        self.read_state = read_state   # core-published: linearizable reads may stay local
        self.db_path = db_path
        self.map_size = map_size
        self.backend = None
        self._ids = None           # (cluster ID, member ID) of the open file
        self._headers = wire.Headers()
        self.stats = None          # kvcore/metrics/grpc_stats.GrpcStats: counts local ranges
        self.read_index = ReadIndexBatcher(lambda: client.call(READ_INDEX_METHOD, b""))
        self.auth = AuthView(client)
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the member's LMDB file (after the core installed a snapshot)."""
        if self.backend is not None:
            self.backend.close()  # LMDB allows one open environment per file
            self.backend = None
        self.backend = be.Backend(self.db_path, self.map_size, readonly=True)
        self._ids = None

    def _header(self, txn, rev: int) -> bytes:
        meta = self.backend.meta
        ids = self._ids
        if ids is None:
            ids = tuple(be.from_u64(v) if v else 0 for v in
                        (txn.get(be.META_CLUSTER_ID, db=meta), txn.get(be.META_MEMBER_ID, db=meta)))
            if all(ids):   # fixed for this file once the core has written them
                self._ids = ids
        term = txn.get(be.META_TERM, db=meta)
        return self._headers.get(ids[0], ids[1], rev, be.from_u64(term) if term else 0)

    async def range(self, request: bytes, ctx) -> bytes:
        r = rpc_pb2.RangeRequest.FromString(request)
        rules.check_range(r)
        token = fr.call_identity(ctx)
        if self.read_state is not None and self.read_state.auth():
            # Auth is on: a token's caller is checked here (authview.py); no token,
            # a certificate's name or a past revision: the core checks and serves.
            if token is None:
                return await self.client.call(RANGE, request)
            if token[0] == fr.CN_MARK or r.revision > 0:
                return await self.client.call_token(RANGE, request, token)
            return await self._range_checked(request, r, token)
        if token is not None and token[0] != fr.CN_MARK:
            # etcd refuses an unknown token even with auth off: the core checks it.
            return await self.client.call_token(RANGE, request, token)
        if r.revision > 0:
            return await self.client.call(RANGE, request)
        need = 0 if self._now(r) else be.from_u64(await self.read_index.get())
        out = self._serve(r, need)
        return out if out is not None else await self.client.call(RANGE, request)

    async def _range_checked(self, request: bytes, r, token: str) -> bytes:
        """A Range of the current revision while auth is on, checked and served here
        when the core's answer about the token still holds (etcd checks a
        linearizable read once its read index is reached: so here)."""
        ent = await self.auth.who(token)
        out = None
        if ent is not None:
            need = 0 if self._now(r) else be.from_u64(await self.read_index.get())
            out = self._serve(r, need, lambda txn: self.auth.check(
                txn, self.backend, token, ent, r.key, r.range_end))
        return out if out is not None else await self.client.call_token(RANGE, request, token)

    def _now(self, r) -> bool:
        """The read may be served from the view as it is (serializable, or this member
        is its own quorum: kvcore/ipc/readstate.py); otherwise it waits for a read index."""
        return r.serializable or (self.read_state is not None and self.read_state.local())

    def _serve(self, r, need: int, check=None) -> Optional[bytes]:
        """The answer from this worker's view once index ``need`` is applied here, or
        None when the core must answer; ``check(txn)`` first, if given: False sends
        the read to the core, an exception refuses it."""
        b = self.backend
        with b.begin_read() as txn:
            view = LatestView(b, txn)
            if view.consistent_index < need or (check is not None and not check(txn)):
                return None
            try:
                rev, parts = range_parts(view, r)
            except NeedsCore:
                return None
            if self.stats is not None:
                self.stats.local_ranges += 1
            return wire.join_with_header(self._header(txn, rev), parts)
