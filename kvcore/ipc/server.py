"""The core's end of the worker IPC: runs each framed request through the core's
handler table (the services' registrations) and sends the answer back in the next
batched write."""
from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import DecodeError

from kvcore.api.errors import EtcdError
from kvcore.api.methods import PATHS
from kvcore.auth.caller import TokenPending
from kvcore.engine.base import UNMARSHAL_STREAM, GrpcError, StatusCode
from kvcore.ipc import framing as fr
from kvcore.server import learner
from kvcore.ipc.framing import AUTH_WHO_METHOD, HTTP_METHOD, READ_INDEX_METHOD, V2_METHOD

log = logging.getLogger("kvcore.ipc")


class CoreStream:
    """The core's end of one streaming call relayed by a worker.

    At most STREAM_WINDOW messages are in flight to the worker (it returns credit
    as the client takes them); ``can_send()`` says whether there is room. A batch
    takes one credit per message in it, so a stream of many watchers is "full" after
    one fan-out until the worker has handed it on: the hub then merges the revisions
    that arrive meanwhile into one response per watcher (kvcore/mvcc/watch.py). Control
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

    def widen(self, window: int) -> None:
        """Allow ``window`` messages in flight instead of STREAM_WINDOW (called when
        the stream opens, before it sends)."""
        self.credit += window - fr.STREAM_WINDOW

    def send(self, payload: bytes) -> None:
        if not self.closed:
            self.credit -= 1
            self.conn.send(self.sid, self.method, fr.S_MSG, payload)

    def reply(self, payload: bytes) -> None:
        """The answer to one message of the client's (framing.S_REPLY): no credit."""
        if not self.closed:
            self.conn.send(self.sid, self.method, fr.S_REPLY, payload)

    def send_batch(self, payloads: list) -> None:
        """Several messages in one frame, a credit each (a watch fan-out: the
        stream's room is checked once for all its watchers)."""
        if not self.closed:
            self.credit -= len(payloads)
            if len(payloads) == 1:
                self.conn.send(self.sid, self.method, fr.S_MSG, payloads[0])
            else:
                self.conn.send(self.sid, self.method, fr.S_BATCH, fr.pack_batch(payloads))

    def send_packed(self, payload: bytes) -> None:
        """An S_BATCH payload built by the caller (framing.pack_batch's format)."""
        if not self.closed:
            self.credit -= fr.batch_count(payload)
            self.conn.send(self.sid, self.method, fr.S_BATCH, payload)

    def end(self, code: int = 0, message: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.conn.streams.pop(self.sid, None)
            self.conn.send(self.sid, self.method, fr.S_END, fr.pack_error(code, message))


class _Held:
    """The handler of a stream whose token is not known here yet: keeps what the
    client sends until the token's entry is applied."""

    keep_after_half_close = True   # a half-close is replayed too

    def __init__(self):
        self.messages: list = []
        self.half_closed = False

    def on_message(self, payload: bytes) -> None:
        self.messages.append(payload)


class DirectAnswers:
    """Unary calls whose answer is the result of a proposal: the apply that resolves
    the proposal writes the answer to the worker itself, one write per connection
    per apply, instead of a done callback on the next loop turn and a flush on the
    turn after it (docs/decisions.md, "A lone put: the answer leaves with the
    apply"). A call that ends otherwise (expired, cancelled, refused before its
    apply) is answered by its done callback as before."""

    __slots__ = ("routes",)

    def __init__(self):
        self.routes: dict = {}   # future -> (connection, call id, method, done callback)

    def resolve(self, results: list) -> None:
        """Set each (future, result or GrpcError); answer the routed ones now."""
        routes = self.routes
        touched = None
        for fut, res in results:
            if fut.done():
                continue
            route = routes.pop(fut, None) if routes else None
            if route is not None:
                fut.remove_done_callback(route[3])   # before the result schedules it
            failed = isinstance(res, GrpcError)
            if failed:
                fut.set_exception(res)
            else:
                fut.set_result(res)
            if route is None:
                continue
            conn, call_id, method, _ = route
            if conn.calls.pop(call_id, None) is not fut:
                continue
            if failed:
                fut.exception()   # retrieved: answered here
                conn.send(call_id, method, fr.ERR, fr.pack_error(res.code, res.message))
            else:
                conn.send(call_id, method, fr.RESP, res)
            if touched is None:
                touched = {conn}
            else:
                touched.add(conn)
        if touched is not None:
            for conn in touched:
                conn.flush_now()


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
        self._stats: dict = {}  # ask id -> future of the worker's metrics counters
        self._answers = core.answers
        self._next_ask = 0

    def request_stats(self) -> asyncio.Future:
        """The worker's metrics counters (bytes, kvcore/metrics/grpc_stats.py)."""
        self._next_ask = (self._next_ask + 1) & 0xFFFFFFFF
        fut = self._loop.create_future()
        self._stats[self._next_ask] = fut
        self.send(self._next_ask, 0, fr.STATS, b"")
        return fut

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
                if caller is not None:   # the context variables authorize set
                    for var, tok in reversed(caller):
                        var.reset(tok)
        elif kind == fr.S_MSG:
            st = self.streams.get(call_id)
            if st is not None:
                try:
                    st.handler.on_message(payload)
                except GrpcError as e:
                    self._close_stream(st)
                    st.end(e.code, e.message)
                except DecodeError as e:   # grpc-go's answer to a message it cannot unmarshal
                    self._close_stream(st)
                    st.end(StatusCode.INTERNAL, f"{UNMARSHAL_STREAM} {e}")
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
                token = payload.decode(errors="replace") or None
                try:
                    handler = self.core.auth_api.wrap_stream(PATHS[method], factory, st, token)
                except TokenPending as p:   # messages wait with the stream (_Held)
                    st.handler = _Held()
                    self.streams[call_id] = st
                    p.future.add_done_callback(
                        lambda f: self._stream_token_ready(f, st, factory, token))
                    return
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
                if isinstance(st.handler, _Held):
                    st.handler.half_closed = True
                elif hasattr(st.handler, "on_half_close"):
                    st.handler.on_half_close()   # it ends the stream when it has answered
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
        elif kind == fr.STATS:
            fut = self._stats.pop(call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(payload)
        elif kind == fr.HELLO:
            self.worker_pid = int(payload.decode() or 0)
            self._on_hello(self)

    def _unary(self, call_id, method, payload):
        if method == HTTP_METHOD:
            fut = asyncio.ensure_future(self.core.http_probe(payload))
            self.calls[call_id] = fut
            fut.add_done_callback(lambda f, c=call_id, m=method: self._done(c, m, f))
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
        if method == AUTH_WHO_METHOD:
            self._who(call_id, method, payload.decode("utf-8", "replace"))
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
            done = lambda f, c=call_id, m=method: self._done(c, m, f)  # noqa: E731
            res.add_done_callback(done)
            self._answers.routes[res] = (self, call_id, method, done)

    def _stream_token_ready(self, fut, st, factory, token) -> None:
        """A stream held for its token: open it for real (or refuse it) and replay
        what the client sent meanwhile."""
        held = st.handler
        if self.streams.get(st.sid) is not st:
            return   # cancelled while held
        if not fut.result():
            del self.streams[st.sid]
            st.end(*EtcdError.INVALID_AUTH_TOKEN)
            return
        try:
            handler = self.core.auth_api.wrap_stream(PATHS[st.method], factory, st, token)
        except TokenPending:
            handler = None
            st.end(*EtcdError.INVALID_AUTH_TOKEN)
        if handler is None:
            self.streams.pop(st.sid, None)
            return
        st.handler = handler
        for m in held.messages:
            self.frame_received(st.sid, st.method, fr.S_MSG, m)
        if held.half_closed:
            self.frame_received(st.sid, st.method, fr.S_CLOSE, b"")

    def _who(self, call_id, method, token: str) -> None:
        """Who a token names, for a worker that checks a Range itself; a simple token
        whose Authenticate has not applied here yet is answered once it has."""
        try:
            answer = self.core.auth_api.who(token)
        except TokenPending as p:
            p.future.add_done_callback(
                lambda f: self._who(call_id, method, token) if f.result() else
                self.send(call_id, method, fr.ERR, fr.pack_error(*EtcdError.INVALID_AUTH_TOKEN)))
            return
        except GrpcError as e:
            self.send(call_id, method, fr.ERR, fr.pack_error(e.code, e.message))
            return
        self.send(call_id, method, fr.RESP, answer)

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
        for fut in self._stats.values():
            fut.cancel()
        self._stats = {}
        calls, self.calls = self.calls, {}
        for fut in calls.values():
            fut.cancel()   # nobody is left to answer

    def _done(self, call_id, method, fut):
        self.calls.pop(call_id, None)
        self._answers.routes.pop(fut, None)
        if fut.cancelled():
            self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.CANCELLED, "cancelled"))
            return
        exc = fut.exception()
        if exc is None:
            self.send(call_id, method, fr.RESP, fut.result())
        elif isinstance(exc, GrpcError):
            self.send(call_id, method, fr.ERR, fr.pack_error(exc.code, exc.message))
        elif isinstance(exc, DecodeError):   # decoded inside the handler's coroutine
            self.send(call_id, method, fr.ERR, fr.pack_error(
                StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"))
        else:
            self.send(call_id, method, fr.ERR, fr.pack_error(StatusCode.UNKNOWN, str(exc)))
