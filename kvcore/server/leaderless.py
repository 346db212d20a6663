"""Proposals that arrive while this member knows no leader wait for one, as etcd's do.

etcd's raft node reads its proposal channel only while it knows a leader, so a put, a
txn or a lease grant sent during an election blocks until one is known and then goes
on; a client's write that lands in a short election succeeds (clientv3 does not retry
a put). One still waiting at the request timeout was never handed to Raft: it fails
with the context's own error, which etcd 3.5 sends as it is ("context deadline
exceeded", gRPC Unknown), and it is dropped, never proposed later.
"""
from __future__ import annotations

from typing import Callable

from kvcore.api.errors import EtcdError, etcd_error
from kvcore.engine.base import GrpcError
from kvcore.server.deadlines import Deadlines


class LeaderWait:
    """``add`` parks a proposal; ``release`` (a leader is known) proposes every one
    still wanted with ``propose_now(op, req, decoded)`` and passes its outcome on."""

    def __init__(self, loop, timeout: float, propose_now: Callable, on_expire: Callable):
        self._loop = loop
        self._propose_now = propose_now
        self._on_expire = on_expire          # counts the failure (etcd's proposals_failed)
        self._waiting: list = []
        self._deadlines = Deadlines(loop, timeout, self._expired)

    def add(self, op: int, req: bytes, decoded=None):
        out = self._loop.create_future()
        self._waiting.append((out, op, req, decoded))
        self._deadlines.add(out)
        return out

    def release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for out, op, req, decoded in waiting:
            if out.done():          # expired or cancelled: never proposed
                continue
            try:
                fut = self._propose_now(op, req, decoded)
            except GrpcError as e:   # e.g. too many requests by now
                out.set_exception(e)
                continue
            fut.add_done_callback(lambda f, out=out: _pass_on(f, out))

    def _expired(self, fut) -> None:
        self._on_expire()
        if not fut.done():
            fut.set_exception(etcd_error(EtcdError.CONTEXT_DEADLINE))

    def __len__(self) -> int:
        return sum(1 for w in self._waiting if not w[0].done())


def _pass_on(inner, out) -> None:
    if out.done():
        return
    if inner.cancelled():
        out.cancel()
    elif inner.exception() is not None:
        out.set_exception(inner.exception())
    else:
        out.set_result(inner.result())
