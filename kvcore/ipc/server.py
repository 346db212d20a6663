"""The core's end of the worker IPC: runs each framed request through the core's
handler table (the services' registrations) and sends the answer back in the next
batched write."""
from __future__ import annotations

import logging

from google.protobuf.message import DecodeError

from kvcore.api.errors import EtcdError
from kvcore.api.methods import PATHS
from kvcore.auth.caller import CALLER, TokenPending
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.ipc import framing as fr
from kvcore.server import learner
from kvcore.ipc.framing import HEALTH_METHOD, METRICS_METHOD, READ_INDEX_METHOD, V2_METHOD

log = logging.getLogger("kvcore.ipc")


class CoreStream:
    """The core's end of one streaming call relayed by a worker.

    At most STREAM_WINDOW messages are in flight to the worker (it returns credit
    as the client takes them); ``can_send()`` says whether there is room. Control
    replies may still be sent without room: they are bounded by what the client asks.
    """

    __slots__ = ("conn", "sid", "method", "credit", "closed", "handler", "on_credit")

    def __init__(self, conn, sid, method):
        self.conn = conn
        self.sid = sid
        self.method = method
        self.credit = fr.STREAM_WINDOW
        self.closed = False
        self.handler = None
        self.on_credit = None

    def can_send(self) -> bool:
        return not self.closed and self.credit > 0

    def send(self, payload: bytes) -> None:
        if not self.closed:
            self.credit -= 1
            self.conn.send(self.sid, self.method, fr.S_MSG, payload)

    def end(self, code: int = 0, message: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.conn.streams.pop(self.sid, None)
            self.conn.send(self.sid, self.method, fr.S_END, fr.pack_error(code, message))


class CoreConnection(fr.FrameProtocol):
    def __init__(self, core, on_hello):
        super().__init__()
        self.core = core
        self._on_hello = on_hello
        self._table = [core.unary.get(p) for p in PATHS]
        self._stream_table = [core.streams.get(p) for p in PATHS]
        self.streams: dict[int, CoreStream] = {}
        self.calls: dict = {}   # call id -> future of a unary call still being answered
        self.worker_pid = None
        self.auth = core.auth   # one AuthStore for the core's life (reloaded in place)

    def frame_received(self, call_id, method, kind, payload):
        if kind == fr.REQ or kind == fr.TREQ:
            framed = payload
            if kind == fr.TREQ:
                token, payload = fr.unpack_token(payload)
            else:
                token = None
            refused = (learner.unary_refusal(self.core, method, payload) if method < len(PATHS)
                       else learner.read_index_refusal(self.core)
                       if method == READ_INDEX_METHOD else None)
            if refused is not None:
                self.send(call_id, method, fr.ERR, fr.pack_error(refused.code, refused.message))
                return
            caller = None
            if self.auth.enabled and method < len(PATHS):
                try:
                    caller = self.core.auth_api.authorize(method, payload, token)
                except GrpcError as e:
                    self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
                    return
                except TokenPending as p:   # issued by an entry not applied here yet
                    p.future.add_done_callback(
                        lambda f: self._token_ready(f, call_id, method, kind, framed))
                    return
            elif token is not None and method < len(PATHS):
                try:
                    self.core.auth_api.refuse_token_while_off(method, payload, token)
                except GrpcError as e:
                    self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
                    return
            try:
                self._unary(call_id, method, payload)
            finally:
                if caller is not None:
                    CALLER.reset(caller)
        elif kind == fr.S_MSG:
            st = self.streams.get(call_id)
            if st is not None:
                try:
                    st.handler.on_message(payload)
                except GrpcError as e:
                    self._close_stream(st)
                    st.end(e.code, e.message)
                except Exception as e:
                    log.debug("stream %s message failed: %r", PATHS[method], e)
                    self._close_stream(st)
                    st.end(StatusCode.INVALID_ARGUMENT, str(e))
        elif kind == fr.S_CREDIT:
            st = self.streams.get(call_id)
            if st is not None:
                st.credit += fr.unpack_credit(payload)
                if st.on_credit is not None:
                    st.on_credit()
        elif kind == fr.S_OPEN:
            factory = self._stream_table[method] if method < len(self._stream_table) else None
            st = CoreStream(self, call_id, method)
            refused = learner.stream_refusal(self.core, method)
            if refused is not None:
                st.closed = True
                self.send(call_id, method, fr.S_END, fr.pack_error(refused.code, refused.message))
                return
            if factory is None:
                st.closed = True
                self.send(call_id, method, fr.S_END, fr.pack_error(
                    StatusCode.UNIMPLEMENTED, f"unknown method {PATHS[method]}"))
                return
            if self.auth.enabled:
                handler = self.core.auth_api.wrap_stream(
                    PATHS[method], factory, st, payload.decode(errors="replace") or None)
                if handler is None:
                    return   # refused: the stream has ended with the error
                self.streams[call_id] = st
                st.handler = handler
                return
            if payload:   # a token sent while auth is disabled
                handler = self.core.auth_api.wrap_stream_while_off(
                    PATHS[method], factory, st, payload.decode(errors="replace"))
                if handler is None:
                    return
                self.streams[call_id] = st
                st.handler = handler
                return
            self.streams[call_id] = st
            st.handler = factory(st)
        elif kind == fr.S_CLOSE:
            st = self.streams.get(call_id)
            if st is None:
                return
            if payload != b"c" and getattr(st.handler, "keep_after_half_close", False):
                return  # a server-streaming call: the request is in, the answer goes on
            del self.streams[call_id]
            self._close_stream(st)
            if payload != b"c":
                st.end()  # a bidi call whose client half-closed ends (as etcd's do)
            st.closed = True
        elif kind == fr.CANCEL:
            fut = self.calls.get(call_id)
            if fut is not None:
                fut.cancel()
        elif kind == fr.HELLO:
            self.worker_pid = int(payload.decode() or 0)
            self._on_hello(self)

    def _unary(self, call_id, method, payload):
        if method == HEALTH_METHOD:
            reason = self.core.health()
            if reason is None:
                self.send(call_id, method, fr.RESP, b"")
            else:
                self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.UNAVAILABLE, reason))
            return
        if method == METRICS_METHOD:
            self.send(call_id, method, fr.RESP, self.core.metrics.render())
            return
        if method == V2_METHOD:
            try:
                res = self.core.services["v2"].handle(payload)
            except GrpcError as e:
                self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
                return
            if isinstance(res, bytes):
                self.send(call_id, method, fr.RESP, res)
            else:
                self.calls[call_id] = res
                res.add_done_callback(lambda f, c=call_id, m=method: self._done(c, m, f))
            return
        if method == READ_INDEX_METHOD:
            try:
                fut = self.core.read_index_for_worker()
            except GrpcError as e:
                self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
                return
            fut.add_done_callback(lambda f, c=call_id, m=method: self._done(c, m, f))
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
        except DecodeError as e:   # grpc-go's answer to bytes it cannot unmarshal
            self.send(call_id, method, fr.ERR, fr.pack_error(
                StatusCode.INTERNAL, f"grpc: error unmarshalling request: {e}"))
            return
        except Exception as e:  # a malformed request must not take the core down
            log.debug("request %s failed: %r", PATHS[method], e)
            self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.INVALID_ARGUMENT, str(e)))
            return
        if isinstance(res, bytes):
            self.send(call_id, method, fr.RESP, res)
        else:
            self.calls[call_id] = res
            res.add_done_callback(lambda f, c=call_id, m=method: self._done(c, m, f))

    def _token_ready(self, fut, call_id, method, kind, framed) -> None:
        if fut.result():
            self.frame_received(call_id, method, kind, framed)
        else:
            self.send(call_id, method, fr.ERR, fr.pack_error(*EtcdError.INVALID_AUTH_TOKEN))

    @staticmethod
    def _close_stream(st: CoreStream) -> None:
        closer = getattr(st.handler, "on_close", None)
        if closer is not None:
            closer()

    def connection_made(self, transport):
        super().connection_made(transport)
        self.core.connections.add(self)

    def connection_lost(self, exc):
        self.core.connections.discard(self)
        streams, self.streams = self.streams, {}
        for st in streams.values():
            st.closed = True
            self._close_stream(st)
        calls, self.calls = self.calls, {}
        for fut in calls.values():
            fut.cancel()   # nobody is left to answer

    def _done(self, call_id, method, fut):
        self.calls.pop(call_id, None)
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
