"""The worker's end of the IPC: each call is a frame to the core and a future."""
from __future__ import annotations

import asyncio

from kvcore.engine.base import GrpcError, StatusCode
from kvcore.ipc import framing as fr


class CoreClient(fr.FrameProtocol):
    def __init__(self, on_lost):
        super().__init__()
        self._pending: dict[int, asyncio.Future] = {}
        self._next = 0
        self._on_lost = on_lost
        self.closed = False

    def call(self, method: int, payload: bytes) -> asyncio.Future:
        if self.closed:
            raise GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped")
        self._next = (self._next + 1) & 0xFFFFFFFF
        fut = self._loop.create_future()
        self._pending[self._next] = fut
        self.send(self._next, method, fr.REQ, payload)
        return fut

    def frame_received(self, call_id, method, kind, payload):
        fut = self._pending.pop(call_id, None)
        if fut is None or fut.done():
            return
        if kind == fr.RESP:
            fut.set_result(payload)
        else:
            code, msg = fr.unpack_error(payload)
            fut.set_exception(GrpcError(StatusCode(code), msg))

    def connection_lost(self, exc):
        self.closed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped"))
        self._on_lost()
