"""etcd's "require leader" calls (clientv3.WithRequireLeader: metadata hasleader=true),
checked in the worker as etcd's gRPC interceptors check them
(server/etcdserver/api/v3rpc/interceptor.go):

* a unary call, or a stream at its start, while this member knows no leader fails
  with UNAVAILABLE "etcdserver: no leader" before anything else runs;
* a stream that started with a leader is ended with that error once the member has
  been without one for 3 election timeouts in a row (etcd's monitorLeader: it is
  slower to end streams than to refuse new calls, as reconnecting costs more).

Whether the member knows a leader comes from the core through the shared ReadState
(kvcore/ipc/readstate.py), set on every leader change.
"""
from __future__ import annotations

import asyncio

from kvcore.engine.base import GrpcError, MethodTable, StatusCode

MAX_NO_LEADER_CNT = 3   # etcd's maxNoLeaderCnt


def no_leader() -> GrpcError:
    return GrpcError(StatusCode.UNAVAILABLE, "etcdserver: no leader")


def requires_leader(ctx) -> bool:
    return ctx.metadata.get("hasleader") == "true"


class RequireLeader:
    """Wraps a worker's method table; ``monitor()`` runs for the worker's life."""

    def __init__(self, read_state, election_s: float):
        self.state = read_state
        self.election_s = election_s
        self._streams: set = set()       # tasks of streams that require a leader
        self._lost: set = set()          # those ended for want of one

    def wrap(self, methods: MethodTable) -> MethodTable:
        return MethodTable(unary={p: self._unary(h) for p, h in methods.unary.items()},
                           stream={p: self._stream(h) for p, h in methods.stream.items()})

    def _unary(self, inner):
        async def handler(request, ctx):
            if requires_leader(ctx) and not self.state.has_leader():
                raise no_leader()
            return await inner(request, ctx)
        return handler

    def _stream(self, inner):
        async def handler(requests, send, ctx):
            if not requires_leader(ctx):
                return await inner(requests, send, ctx)
            if not self.state.has_leader():
                raise no_leader()
            task = asyncio.ensure_future(inner(requests, send, ctx))
            self._streams.add(task)
            try:
                return await task
            except asyncio.CancelledError:
                if task in self._lost:
                    raise no_leader() from None
                raise
            finally:
                self._streams.discard(task)
                self._lost.discard(task)
        return handler

    async def monitor(self) -> None:
        without = 0
        while True:
            await asyncio.sleep(self.election_s)
            without = 0 if self.state.has_leader() else without + 1
            if without >= MAX_NO_LEADER_CNT:
                for task in list(self._streams):
                    self._lost.add(task)
                    task.cancel()
