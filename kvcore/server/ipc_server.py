"""The core's end of the worker IPC: runs each framed request through the core's
handler table and sends the answer back in the next batched write."""
from __future__ import annotations

import logging

from kvcore.api.methods import PATHS
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.ipc import framing as fr

log = logging.getLogger("kvcore.ipc")

HEALTH_METHOD = 0xFFFF  # pseudo-method: the worker's /health asks the core


class CoreConnection(fr.FrameProtocol):
    def __init__(self, core, on_hello):
        super().__init__()
        self.core = core
        self._on_hello = on_hello
        self._table = [core.unary.get(p) for p in PATHS]
        self.worker_pid = None

    def frame_received(self, call_id, method, kind, payload):
        if kind == fr.REQ:
            if method == HEALTH_METHOD:
                reason = self.core.health()
                if reason is None:
                    self.send(call_id, method, fr.RESP, b"")
                else:
                    self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.UNAVAILABLE, reason))
                return
            handler = self._table[method] if method < len(self._table) else None
            if handler is None:
                self.send(call_id, method, fr.ERR, fr.pack_error(
                    StatusCode.UNIMPLEMENTED, f"unknown method {PATHS[method] if method < len(PATHS) else method}"))
                return
            try:
                res = handler(payload)
            except GrpcError as e:
                self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
                return
            except Exception as e:  # a malformed request must not take the core down
                log.debug("request %s failed: %r", PATHS[method], e)
                self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.INVALID_ARGUMENT, str(e)))
                return
            if isinstance(res, bytes):
                self.send(call_id, method, fr.RESP, res)
            else:
                res.add_done_callback(lambda f, c=call_id, m=method: self._done(c, m, f))
        elif kind == fr.HELLO:
            self.worker_pid = int(payload.decode() or 0)
            self._on_hello(self)

    def _done(self, call_id, method, fut):
        if fut.cancelled():
            self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.CANCELLED, "cancelled"))
            return
        exc = fut.exception()
        if exc is None:
            self.send(call_id, method, fr.RESP, fut.result())
        elif isinstance(exc, GrpcError):
            self.send(call_id, method, fr.ERR, fr.pack_error(exc.code, exc.message))
        else:
            self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.UNKNOWN, str(exc)))
