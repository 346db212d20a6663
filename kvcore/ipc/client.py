"""The worker's end of the IPC: each call is a frame to the core and a future."""
from __future__ import annotations

import asyncio

from kvcore.engine.base import Framed, GrpcError, StatusCode
from kvcore.ipc import framing as fr


class _Stream:
    """The worker's half of one streaming call: messages from the core queue here."""

    __slots__ = ("queue", "ended", "undelivered_credit", "direct", "at_core")

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.ended = False
        self.undelivered_credit = 0
        self.at_core = 0    # requests sent to the core whose S_REPLY has not come back
        # While the handler waits on an empty queue: the engine's send_nowait, so
        # a message goes to the client in the read callback that brought it.
        self.direct = None


class CoreClient(fr.FrameProtocol):
    def __init__(self, on_lost, on_reload=None, stats=None):
        super().__init__()
        self._stats = stats          # -> bytes: this worker's metrics counters
        self._on_reload = on_reload
        self._pending: dict[int, asyncio.Future] = {}
        self._streams: dict[int, _Stream] = {}
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

    def call_token(self, method: int, payload: bytes, token: str) -> asyncio.Future:
        """A call that carried an auth token (the core checks it when auth is on)."""
        if self.closed:
            raise GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped")
        self._next = (self._next + 1) & 0xFFFFFFFF
        fut = self._loop.create_future()
        self._pending[self._next] = fut
        self.send(self._next, method, fr.TREQ, fr.pack_token(token, payload))
        return fut

    def cancel(self, fut: asyncio.Future) -> None:
        """The caller of ``fut`` (from call()) went away: tell the core, which
        cancels what it was waiting for; its answer, if any, is dropped."""
        for call_id, f in self._pending.items():
            if f is fut:
                del self._pending[call_id]
                if not self.closed:
                    self.send(call_id, 0, fr.CANCEL, b"")
                return

    def frame_received(self, call_id, method, kind, payload):
        if kind == fr.RELOAD:
            if self._on_reload is not None:
                self._on_reload()
            return
        if kind == fr.STATS:
            self.send(call_id, 0, fr.STATS, self._stats() if self._stats else b"")
            return
        if kind == fr.S_REPLY:
            st = self._streams.get(call_id)
            if st is not None:
                if st.at_core:
                    st.at_core -= 1
                direct = st.direct
                if direct is None or not st.queue.empty() or not direct(payload):
                    st.queue.put_nowait((kind, payload))
            return
        if kind == fr.S_MSG or kind == fr.S_BATCH or kind == fr.S_END:
            st = self._streams.get(call_id)
            if st is not None:
                direct = st.direct
                if direct is not None and kind != fr.S_END and st.queue.empty():
                    if kind == fr.S_MSG:
                        n = 1
                        sent = direct(payload)
                    else:
                        n, data = fr.unpack_batch(payload)
                        sent = direct(Framed(data, n))
                    if sent:
                        self.send(call_id, method, fr.S_CREDIT, fr.pack_credit(n))
                        return
                st.queue.put_nowait((kind, payload))
            return
        fut = self._pending.pop(call_id, None)
        if fut is None or fut.done():
            return
        if kind == fr.RESP:
            fut.set_result(payload)
        else:
            code, msg = fr.unpack_error(payload)
            fut.set_exception(GrpcError(StatusCode(code), msg))

    # ---- streams ----

    def stream_handler(self, method: int, local=None):
        """An engine stream handler that relays one streaming call to the core.

        ``local(msg)`` -> the answer to a request, or None: a request this worker
        answers itself (a keep-alive renewed in the shared lease clock) when none
        of the stream's earlier requests still waits for the core's answer, so the
        answers keep the requests' order."""
        async def handler(requests, send, ctx):
            if self.closed:
                raise GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped")
            self._next = (self._next + 1) & 0xFFFFFFFF
            sid = self._next
            st = self._streams[sid] = _Stream()
            token = fr.call_identity(ctx)
            self.send(sid, method, fr.S_OPEN, token.encode() if token else b"")

            async def pump():
                try:
                    async for msg in requests:
                        self.send(sid, method, fr.S_MSG, msg)
                except Exception:  # the client went away; the finally below says so
                    return
                self.send(sid, method, fr.S_CLOSE, b"")

            framed = getattr(ctx, "framed_send", False)
            direct = getattr(ctx, "send_nowait", None)
            queue = st.queue
            listen = getattr(requests, "listen", None)
            if listen is not None and local is not None:
                def on_message(msg):
                    if not st.at_core:
                        answer = local(msg)
                        if answer is not None:
                            d = st.direct
                            if d is None or not queue.empty() or not d(answer):
                                queue.put_nowait((fr.S_REPLY, answer))
                            return
                    st.at_core += 1
                    self.send(sid, method, fr.S_MSG, msg)
                listen(on_message, lambda: self.send(sid, method, fr.S_CLOSE, b""))
                pumper = None
            elif listen is not None:  # the engine hands messages over by callback
                listen(lambda msg: self.send(sid, method, fr.S_MSG, msg),
                       lambda: self.send(sid, method, fr.S_CLOSE, b""))
                pumper = None
            else:
                pumper = asyncio.ensure_future(pump())
            try:
                while True:
                    st.direct = direct
                    try:
                        kind, payload = await queue.get()
                    finally:
                        st.direct = None
                    credit = 0
                    while True:   # everything queued now, then one credit frame
                        if kind == fr.S_END:
                            st.ended = True
                            if credit:
                                self.send(sid, method, fr.S_CREDIT, fr.pack_credit(credit))
                            code, msg = fr.unpack_error(payload)
                            if code:
                                raise GrpcError(StatusCode(code), msg)
                            return
                        if kind == fr.S_REPLY:
                            await send(payload)     # replies take no credit
                        elif kind == fr.S_MSG:
                            await send(payload)
                            credit += 1
                        elif framed:
                            n, data = fr.unpack_batch(payload)
                            await send(Framed(data, n))
                            credit += n     # a credit per message of the batch
                        else:
                            msgs = fr.split_batch(payload)
                            for m in msgs:
                                await send(m)
                            credit += len(msgs)
                        if queue.empty():
                            break
                        kind, payload = queue.get_nowait()
                    if credit:
                        self.send(sid, method, fr.S_CREDIT, fr.pack_credit(credit))
            finally:
                if pumper is not None:
                    pumper.cancel()
                else:
                    listen(None, None)
                self._streams.pop(sid, None)
                if not st.ended and not self.closed:
                    self.send(sid, method, fr.S_CLOSE, b"c")
        return handler

    def connection_lost(self, exc):
        self.closed = True
        for st in self._streams.values():
            st.queue.put_nowait((fr.S_END, fr.pack_error(StatusCode.UNAVAILABLE,
                                                          "etcdserver: server stopped")))
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped"))
        self._on_lost()
