# cython: language_level=3
"""kvcore's native gRPC engine: HTTP/2 by the system libnghttp2, gRPC in Cython.

Layers (asyncpg-style)::

    asyncio/uvloop transport  ──bytes──▶  _Conn (this module: an asyncio Protocol)
        sniff: HTTP/2 client preface → nghttp2 session; else HTTP/1.x → _H1 parser
        nghttp2 C callbacks → _Stream state (headers, 5-byte gRPC framing, windows)
        complete calls → handlers of the MethodTable (request bytes → response bytes)
    kvcore/engine/native.py: NativeEngine (start/stop, listening sockets, config)

Lifetimes (the rules that keep the C pointers valid)
----------------------------------------------------
* A _Conn owns its ``nghttp2_session``; the session's user_data is the _Conn
  (borrowed: the session is deleted in _Conn._close_session / __dealloc__ before
  the _Conn can go away).
* A _Stream lives in ``_Conn.streams`` from HEADERS until nghttp2's
  on_stream_close callback; nghttp2's stream user data and the DATA provider's
  ``source.ptr`` point at it (borrowed from that dict). on_stream_close is the only
  place that removes it, after nghttp2 has forgotten the stream, so nghttp2 never
  sees a dangling pointer. Handlers may keep a _Stream past its close; every
  operation checks ``closed``.
* No user code runs inside an nghttp2 callback: calls whose request is complete
  are collected during ``mem_recv`` and dispatched after it returns.

Writes are batched: everything nghttp2 wants to send is drained into one
``transport.write`` per ``data_received`` and per event-loop turn (call_soon).
"""
from libc.stdint cimport uint8_t, int32_t, uint32_t, uint64_t
from libc.string cimport memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize

from cpython.ref cimport PyObject, Py_DECREF
from h2_nghttp2 cimport *

cdef extern from "Python.h":
    # Python >= 3.10: resume a coroutine without raising StopIteration at its end.
    # Returns 0 (PYGEN_RETURN: *result is the return value), 1 (PYGEN_NEXT: *result
    # is what it yielded) or -1 (PYGEN_ERROR: an exception is set).
    int PyIter_Send(object iter, object arg, PyObject** presult) except? -1

import asyncio
import base64
import collections
import logging

from kvcore.engine.base import CallContext, GrpcError, StatusCode, certificate_cn

log = logging.getLogger("kvcore.engine.native")
_new_context = object.__new__

cdef bytes _POST = b"POST"
cdef bytes PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
cdef int PREFACE_LEN = 24

# Stream kinds, decided when the request headers are complete.
cdef enum Kind:
    K_UNKNOWN = 0
    K_UNARY = 1
    K_STREAM = 2
    K_HTTP = 3
    K_REJECT = 4

# Connection modes.
cdef enum Mode:
    M_SNIFF = 0
    M_H2 = 1
    M_H1 = 2
    M_CLOSED = 3

# Static header strings (NO_COPY for nghttp2).
cdef char* S_STATUS = b":status"
cdef char* S_200 = b"200"
cdef char* S_CT = b"content-type"
cdef char* S_GRPC = b"application/grpc"
cdef char* S_GSTATUS = b"grpc-status"
cdef char* S_GMESSAGE = b"grpc-message"
cdef char* S_0 = b"0"
cdef char* S_ACCEPT_ENC = b"grpc-accept-encoding"
cdef char* S_IDENTITY = b"identity"

cdef uint8_t NOCOPY = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE

# Headers the engine consumes itself; everything else is metadata.
cdef frozenset _RESERVED = frozenset([
    b"content-type", b"te", b"grpc-timeout", b"grpc-encoding",
    b"grpc-accept-encoding", b"content-length"])

_TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0,
                  ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}


cdef inline void _nv(nghttp2_nv* nv, char* name, size_t nl, char* value, size_t vl,
                     uint8_t flags) noexcept:
    nv.name = <uint8_t*>name
    nv.namelen = nl
    nv.value = <uint8_t*>value
    nv.valuelen = vl
    nv.flags = flags


def percent_encode(str message) -> bytes:
    """grpc-message encoding: printable ASCII except '%' as is, the rest %XX of UTF-8."""
    raw = message.encode("utf-8", "replace")
    out = bytearray()
    for b in raw:
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def parse_timeout(bytes value):
    """grpc-timeout ("100m", "5S", ...) in seconds, or None if malformed."""
    if not 2 <= len(value) <= 9:
        return None
    cdef Py_ssize_t last = len(value) - 1
    unit = _TIMEOUT_UNITS.get(value[last])
    digits = value[:last]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


# ---------------------------------------------------------------------------
# Server-wide configuration and method table
# ---------------------------------------------------------------------------

cdef class EngineCore:
    """What every connection of one NativeEngine shares (built by native.py)."""

    cdef dict routes              # path bytes -> (kind, handler, path str)
    cdef bytes last_path
    cdef object last_route
    cdef object http
    cdef public Py_ssize_t max_recv
    cdef public Py_ssize_t max_send
    cdef public uint32_t max_streams
    cdef public uint32_t initial_window
    cdef public int32_t conn_window
    cdef public Py_ssize_t max_header_list
    cdef public Py_ssize_t conn_budget
    cdef public Py_ssize_t stream_high
    cdef public double ping_min_time
    cdef public int ping_max_strikes
    cdef public double keepalive_time
    cdef public double keepalive_timeout
    cdef object sweeper
    cdef public bint eager
    cdef public set conns
    cdef public object loop
    cdef public bint shutting_down
    cdef nghttp2_session_callbacks* callbacks
    cdef nghttp2_option* option

    def __cinit__(self):
        self.callbacks = NULL
        self.option = NULL

    def __init__(self, methods, http=None, *, max_receive_message_length,
                 max_send_message_length, max_concurrent_streams=1000,
                 initial_window_size=1 << 20, connection_window_size=16 << 20,
                 max_header_list_size=16 << 10, connection_buffer_budget=16 << 20,
                 stream_write_high_water=256 << 10, ping_min_time=5.0,
                 ping_max_strikes=2, keepalive_time=7200.0, keepalive_timeout=20.0,
                 eager=True):
        self.routes = {}
        for path, fn in methods.unary.items():
            self.routes[path.encode()] = (K_UNARY, fn, path)
        for path, fn in methods.stream.items():
            self.routes[path.encode()] = (K_STREAM, fn, path)
        self.http = http
        self.max_recv = max_receive_message_length
        self.max_send = max_send_message_length
        self.max_streams = max_concurrent_streams
        self.initial_window = initial_window_size
        self.conn_window = connection_window_size
        self.max_header_list = max_header_list_size
        self.conn_budget = connection_buffer_budget
        self.stream_high = stream_write_high_water
        self.ping_min_time = ping_min_time
        self.ping_max_strikes = ping_max_strikes
        self.keepalive_time = keepalive_time
        self.keepalive_timeout = keepalive_timeout
        self.sweeper = None
        self.eager = eager
        self.conns = set()
        self.loop = None
        self.shutting_down = False

        if nghttp2_session_callbacks_new(&self.callbacks) != 0:
            raise MemoryError()
        nghttp2_session_callbacks_set_on_begin_headers_callback(self.callbacks, _on_begin_headers)
        nghttp2_session_callbacks_set_on_header_callback(self.callbacks, _on_header)
        nghttp2_session_callbacks_set_on_frame_recv_callback(self.callbacks, _on_frame_recv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(self.callbacks, _on_data_chunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(self.callbacks, _on_stream_close)
        nghttp2_session_callbacks_set_on_frame_send_callback(self.callbacks, _on_frame_send)
        if nghttp2_option_new(&self.option) != 0:
            raise MemoryError()
        nghttp2_option_set_no_auto_window_update(self.option, 1)
        nghttp2_option_set_max_outbound_ack(self.option, 1000)
        nghttp2_option_set_max_settings(self.option, 32)
        # Rapid reset (CVE-2023-44487) and CONTINUATION flood limits; Debian backports
        # both into 1.52.
        nghttp2_option_set_stream_reset_rate_limit(self.option, 1000, 33)
        nghttp2_option_set_max_continuations(self.option, 8)
        # nghttp2's HTTP semantics checks reset a stream whose :authority is not a bare
        # host[:port], and grpc-go (etcdctl 3.4 with --cluster) sends the endpoint URL
        # "http://host:port" there, which grpc-go's server accepts: headers_done does
        # the checks the engine relies on instead.
        nghttp2_option_set_no_http_messaging(self.option, 1)

    def __dealloc__(self):
        if self.callbacks != NULL:
            nghttp2_session_callbacks_del(self.callbacks)
        if self.option != NULL:
            nghttp2_option_del(self.option)

    cdef object route(self, bytes path):
        """routes[path], remembering the last hit (saves hashing a fresh path)."""
        if path is None:
            return None
        if self.last_path is not None and PyBytes_GET_SIZE(path) == PyBytes_GET_SIZE(
                self.last_path) and memcmp(PyBytes_AS_STRING(path), PyBytes_AS_STRING(
                    self.last_path), PyBytes_GET_SIZE(path)) == 0:
            return self.last_route
        r = self.routes.get(path)
        if r is not None:
            self.last_path = path
            self.last_route = r
        return r

    def protocol(self):
        """Protocol factory for loop.create_server."""
        return _Conn(self)

    def stats(self):
        cdef _Conn c
        cdef _Stream st
        streams = 0
        buffered = 0
        out = 0
        for c in self.conns:
            streams += len(c.streams)
            buffered += c.buffered
            for st in c.streams.values():
                out += st.out_bytes
        return {"connections": len(self.conns), "streams": streams, "buffered": buffered,
                "out_bytes": out}

    def shutdown_notice(self):
        """First half of graceful shutdown: GOAWAY(2^31-1) to every connection."""
        cdef _Conn c
        self.shutting_down = True
        for c in list(self.conns):
            c.shutdown_notice()

    def goaway(self):
        """Second half: GOAWAY(last processed stream); connections close when idle."""
        cdef _Conn c
        for c in list(self.conns):
            c.goaway(NGHTTP2_NO_ERROR, b"")

    def active_streams(self):
        cdef _Conn c
        cdef Py_ssize_t n = 0
        for c in self.conns:
            n += len(c.streams) + c.h1_busy
        return n

    def start_keepalive(self):
        """Server keepalive (etcd's --grpc-keepalive-interval/-timeout): a connection
        silent for keepalive_time gets a PING; one still silent keepalive_timeout
        later is closed. One sweep over all connections every few seconds."""
        if self.keepalive_time > 0 and self.sweeper is None:
            self.sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    def stop_keepalive(self):
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None

    cdef double _sweep_period(self):
        return max(0.05, min(self.keepalive_time, self.keepalive_timeout) / 2)

    def _sweep(self):
        cdef _Conn c
        now = self.loop.time()
        for c in list(self.conns):
            c.keepalive(now)
        self.sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    def abort_all(self):
        cdef _Conn c
        for c in list(self.conns):
            c.abort()


# ---------------------------------------------------------------------------
# Request messages of a streaming call
# ---------------------------------------------------------------------------

cdef class _Requests:
    """Async iterator of a streaming call's request messages (ends at half-close)."""

    cdef object items
    cdef object waiter
    cdef bint ended
    cdef _Stream stream

    def __cinit__(self, _Stream stream):
        self.items = collections.deque()
        self.waiter = None
        self.ended = False
        self.stream = stream

    cdef void push(self, bytes msg):
        self.items.append(msg)
        self._wake()

    cdef void end(self):
        self.ended = True
        self._wake()

    cdef void _wake(self):
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self.items:
            if self.ended:
                raise StopAsyncIteration
            self.waiter = self.stream.conn.core.loop.create_future()
            await self.waiter
        msg = self.items.popleft()
        self.stream.released(len(msg) + 5)
        return msg


# ---------------------------------------------------------------------------
# One HTTP/2 stream = one call
# ---------------------------------------------------------------------------

cdef class _Stream:
    cdef int32_t sid
    cdef _Conn conn
    cdef int kind
    cdef bytes path
    cdef bytes h2method
    cdef object route
    cdef dict metadata
    cdef bytes content_type
    cdef bint grpc_ct
    cdef double timeout            # seconds; < 0: none
    cdef Py_ssize_t header_bytes
    cdef bytearray rbuf            # bytes of an incomplete message (None: none)
    cdef object msg                # the unary request message
    cdef int nmsgs
    cdef int err_code              # set when the request is refused while reading
    cdef str err_msg
    cdef bint discard
    cdef bint remote_closed
    cdef bint closed
    cdef bint dispatched
    cdef bint headers_sent
    cdef bint finished             # no more DATA will be queued
    cdef bint send_trailers
    cdef bint rst_after            # RST_STREAM(NO_ERROR) once our END_STREAM is out
    cdef int status
    cdef str status_msg
    # Outgoing bytes: the current message (5-byte prefix in hdr, body in cur),
    # then whole messages in ``pending`` (a deque, created when first needed).
    cdef char hdr[5]
    cdef int hdr_len
    cdef int hdr_off
    cdef bytes cur
    cdef Py_ssize_t cur_off
    cdef object pending
    cdef Py_ssize_t out_bytes
    cdef Py_ssize_t accounted      # bytes of this stream in conn.buffered
    cdef Py_ssize_t deferred       # stream window bytes not yet consumed
    cdef Py_ssize_t queued         # bytes of whole requests a stream handler has not taken
    cdef object task
    cdef object timer
    cdef object drain_waiter
    cdef _Requests requests

    def __cinit__(self, _Conn conn, int32_t sid):
        self.conn = conn
        self.sid = sid
        self.kind = K_UNKNOWN
        self.timeout = -1.0
        self.status = 0

    # -- receiving -----------------------------------------------------------

    cdef int on_header(self, const uint8_t* name, size_t nl, const uint8_t* value,
                       size_t vl) except -1:
        cdef bytes n, v
        self.header_bytes += nl + vl + 32
        if self.header_bytes > self.conn.core.max_header_list:
            return -2
        if nl > 0 and name[0] == b':':
            if nl == 5 and memcmp(name, b":path", 5) == 0:
                self.path = value[:vl]
            elif nl == 7 and memcmp(name, b":method", 7) == 0:
                if vl == 4 and memcmp(value, b"POST", 4) == 0:
                    self.h2method = _POST
                else:
                    self.h2method = value[:vl]
            return 0
        if nl == 12 and memcmp(name, b"content-type", 12) == 0:
            self.grpc_ct = vl >= 16 and memcmp(value, b"application/grpc", 16) == 0
            if not self.grpc_ct:
                self.content_type = value[:vl]
            return 0
        if nl == 2 and memcmp(name, b"te", 2) == 0:
            return 0
        n = name[:nl]
        v = value[:vl]
        if self.metadata is None:
            self.metadata = {}
        if nl == 12 and memcmp(name, b"grpc-timeout", 12) == 0:
            t = parse_timeout(v)
            if t is not None:
                self.timeout = t
            return 0
        if (nl == 13 or nl == 14 or nl == 20) and n in _RESERVED:
            return 0
        key = n.decode("latin-1")
        if nl > 4 and memcmp(name + nl - 4, b"-bin", 4) == 0:
            try:
                self.metadata[key] = base64.b64decode(v + b"=" * (-len(v) % 4))
            except Exception:
                self.metadata[key] = v
        else:
            self.metadata[key] = v.decode("utf-8", "replace")
        return 0

    cdef void headers_done(self):
        """Request headers complete: decide what kind of call this is."""
        cdef EngineCore core = self.conn.core
        if self.path is None or self.h2method is None:
            self.kind = K_REJECT                  # no :path or :method: malformed
            self.discard = True
            self.err_code = StatusCode.INTERNAL
            self.err_msg = "malformed request: no :method or :path"
            self.conn.ready.append(self)
            return
        if self.grpc_ct:
            route = core.route(self.path)
            if route is None:
                self.kind = K_REJECT
                self.err_code = StatusCode.UNIMPLEMENTED
                self.err_msg = "unknown method %s" % (self.path or b"").decode("latin-1")
                # Answer now; the request body (if any) is discarded.
                self.discard = True
                self.conn.ready.append(self)
                return
            if self.h2method is not _POST:
                self.kind = K_REJECT
                self.discard = True
                self.err_code = StatusCode.INTERNAL
                self.err_msg = "grpc requires POST"
                self.conn.ready.append(self)
                return
            self.route = route
            self.kind = route[0]
            if self.kind == K_STREAM:
                self.requests = _Requests(self)
                self.conn.ready.append(self)
        else:
            self.kind = K_HTTP

    cdef int on_data(self, const uint8_t* data, size_t n) except -1:
        cdef _Conn conn = self.conn
        cdef Py_ssize_t off, have, length
        cdef const uint8_t* p
        cdef bytes msg
        cdef EngineCore core = conn.core
        # Connection window: given back at once unless the connection buffers too much.
        conn.account(<Py_ssize_t>n)
        self.accounted += n
        if self.discard or self.kind == K_REJECT:
            self.release_all()
            nghttp2_session_consume_stream(conn.session, self.sid, n)
            return 0
        if self.kind == K_HTTP:
            if self._rlen() + <Py_ssize_t>n > core.max_recv:
                self.refuse(StatusCode.RESOURCE_EXHAUSTED, "request body too large")
                nghttp2_session_consume_stream(conn.session, self.sid, n)
                return 0
            self._append(data, n)
            nghttp2_session_consume_stream(conn.session, self.sid, n)
            return 0
        # Stream window: deferred while a streaming handler lags behind its requests
        # (whole messages it has not taken yet); a partial message never waits.
        if self.kind == K_STREAM and self.queued > core.stream_high:
            self.deferred += n
        else:
            nghttp2_session_consume_stream(conn.session, self.sid, n)
        # gRPC length-prefixed messages.
        if self._rlen() == 0:
            p = data
            have = n
            off = 0
            while have - off >= 5:
                length = ((<Py_ssize_t>p[off + 1] << 24) | (<Py_ssize_t>p[off + 2] << 16)
                          | (<Py_ssize_t>p[off + 3] << 8) | <Py_ssize_t>p[off + 4])
                if self._check_prefix(p[off], length):
                    return 0
                if have - off - 5 < length:
                    break
                msg = PyBytes_FromStringAndSize(<char*>p + off + 5, length)
                off += 5 + length
                self._message(msg)
                if self.discard:
                    return 0
            if off < have:
                self._append(data + off, n - off)
            return 0
        self._append(data, n)
        return self._parse_buffered()

    cdef inline Py_ssize_t _rlen(self):
        return 0 if self.rbuf is None else PyByteArray_GET_SIZE(self.rbuf)

    cdef inline void _append(self, const uint8_t* data, size_t n):
        if self.rbuf is None:
            self.rbuf = bytearray()
        cdef Py_ssize_t old = PyByteArray_GET_SIZE(self.rbuf)
        PyByteArray_Resize(self.rbuf, old + <Py_ssize_t>n)
        memcpy(PyByteArray_AS_STRING(self.rbuf) + old, data, n)

    cdef int _parse_buffered(self) except -1:
        cdef Py_ssize_t have, length
        cdef const uint8_t* p
        cdef bytes msg
        while True:
            have = PyByteArray_GET_SIZE(self.rbuf)
            if have < 5:
                return 0
            p = <const uint8_t*>PyByteArray_AS_STRING(self.rbuf)
            length = ((<Py_ssize_t>p[1] << 24) | (<Py_ssize_t>p[2] << 16)
                      | (<Py_ssize_t>p[3] << 8) | <Py_ssize_t>p[4])
            if self._check_prefix(p[0], length):
                return 0
            if have - 5 < length:
                return 0
            msg = PyBytes_FromStringAndSize(<char*>p + 5, length)
            del self.rbuf[:5 + length]
            self._message(msg)
            if self.discard:
                return 0

    cdef int _check_prefix(self, uint8_t flag, Py_ssize_t length) except -1:
        """0 if the message may be read; 1 if the call was refused."""
        cdef EngineCore core = self.conn.core
        if length > core.max_recv:
            self.refuse(StatusCode.RESOURCE_EXHAUSTED,
                        "grpc: received message larger than max (%d vs. %d)"
                        % (length, core.max_recv))
            return 1
        if flag != 0:
            self.refuse(StatusCode.INTERNAL,
                        "grpc: compressed flag set with identity or empty encoding")
            return 1
        return 0

    cdef void _message(self, bytes msg):
        if self.kind == K_UNARY:
            self.nmsgs += 1
            if self.nmsgs > 1:
                self.refuse(StatusCode.INTERNAL,
                            "grpc: too many messages for a unary request")
                return
            self.msg = msg
        else:
            self.queued += PyBytes_GET_SIZE(msg) + 5
            self.requests.push(msg)

    cdef void refuse(self, int code, str message):
        """Stop reading this request and answer it with an error status."""
        self.discard = True
        self.rbuf = None
        self.release_all()
        if self.kind == K_STREAM and self.task is not None:
            self.task.cancel()
        self.kind = K_REJECT
        self.err_code = code
        self.err_msg = message
        if not self.dispatched:
            self.conn.ready.append(self)
        else:
            self.finish(code, message)
            if not self.remote_closed:
                self.rst_after = True

    cdef void released(self, Py_ssize_t n):
        """A streaming handler took n bytes: give back windows."""
        cdef _Conn conn = self.conn
        self.queued -= n
        if n > self.accounted:
            n = self.accounted
        self.accounted -= n
        conn.release(n)
        if self.deferred and self.queued <= conn.core.stream_high and not self.closed:
            nghttp2_session_consume_stream(conn.session, self.sid, self.deferred)
            self.deferred = 0
            conn.schedule_flush()

    cdef void release_all(self):
        if self.accounted:
            self.conn.release(self.accounted)
            self.accounted = 0

    cdef void remote_end(self):
        self.remote_closed = True
        if self.kind == K_UNARY or self.kind == K_HTTP:
            if self.kind == K_UNARY and self._rlen():
                self.refuse(StatusCode.INTERNAL, "grpc: truncated message")
                return
            self.conn.ready.append(self)
        elif self.kind == K_STREAM:
            self.requests.end()

    # -- dispatch ------------------------------------------------------------

    cdef object context(self):
        cdef _Conn conn = self.conn
        deadline = None
        if self.timeout >= 0:
            deadline = conn.core.loop.time() + self.timeout
        # CallContext without running the dataclass's Python __init__.
        ctx = _new_context(CallContext)
        ctx.__dict__ = {"method": self.route[2],
                        "metadata": {} if self.metadata is None else self.metadata,
                        "peer": conn.peer, "deadline": deadline, "common_name": conn.cn}
        return ctx

    cdef void dispatch(self):
        cdef EngineCore core = self.conn.core
        cdef PyObject* res = NULL
        cdef int r
        if self.dispatched or self.closed:
            return
        self.dispatched = True
        if self.kind == K_REJECT:
            self.finish(self.err_code, self.err_msg)
            if not self.remote_closed:
                self.rst_after = True
            return
        if self.kind == K_UNARY:
            if self.msg is None:
                self.finish(StatusCode.INTERNAL, "grpc: unary request without message")
                return
            msg = self.msg
            self.msg = None
            self.release_all()
            coro = self.route[1](msg, self.context())
            if core.eager:
                try:
                    r = PyIter_Send(coro, None, &res)
                except BaseException as e:
                    self.fail(e)
                    return
                value = <object>res
                Py_DECREF(value)
                if r == 0:
                    self.reply(value)
                    return
                # Suspended on a future: no Task, a _Stepper resumes it when the
                # future is done (a Task costs more than the rest of a forwarded call).
                stepper = _Stepper(self, coro)
                self.task = stepper
                self._arm_deadline()
                stepper.wait(value)
                return
            else:
                self.task = core.loop.create_task(coro)
            self.task.add_done_callback(self._unary_done)
            self._arm_deadline()
        elif self.kind == K_STREAM:
            self.task = core.loop.create_task(
                self.route[1](self.requests, self.send, self.context()))
            self.task.add_done_callback(self._stream_done)
            self._arm_deadline()
        elif self.kind == K_HTTP:
            body = b"" if self.rbuf is None else bytes(self.rbuf)
            self.rbuf = None
            self.release_all()
            self.task = core.loop.create_task(self._http(body))

    cdef void _arm_deadline(self):
        if self.timeout >= 0:
            self.timer = self.conn.core.loop.call_later(self.timeout, self._deadline)

    def _deadline(self):
        self.timer = None
        if self.closed or self.finished:
            return
        if self.task is not None:
            self.task.cancel()
        self.finish(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if not self.remote_closed:
            self.rst_after = True
        self.conn.schedule_flush()

    def _unary_done(self, task):
        self._task_done(task, True)

    cdef void stepped_out(self, result, exc):
        """A _Stepper's coroutine ended with ``result`` or raised ``exc``."""
        self.task = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.closed or self.finished:
            return
        if exc is not None:
            self.fail(exc)
        else:
            self.reply(result)
        self.conn.schedule_flush()

    def _stream_done(self, task):
        self._task_done(task, False)

    cdef void _task_done(self, task, bint unary):
        """The handler's Task ended: answer with its result (unary), OK (stream),
        its error, or CANCELLED."""
        self.task = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.closed or self.finished:
            return
        if task.cancelled():
            self.finish(StatusCode.CANCELLED, "handler cancelled")
        else:
            exc = task.exception()
            if exc is not None:
                self.fail(exc)
            elif unary:
                self.reply(task.result())
            else:
                self.finish(StatusCode.OK, None)
        self.conn.schedule_flush()

    cdef void fail(self, exc):
        if isinstance(exc, GrpcError):
            self.finish(int(exc.code), exc.message)
        elif isinstance(exc, asyncio.CancelledError):
            self.finish(StatusCode.CANCELLED, "handler cancelled")
        else:
            if not isinstance(exc, Exception):
                log.error("handler of %s raised %r", self.path, exc)
            self.finish(StatusCode.UNKNOWN, str(exc) or type(exc).__name__)

    cdef void reply(self, result):
        """Unary success: headers, one message, OK trailers."""
        cdef bytes payload
        if type(result) is bytes:
            payload = <bytes>result
        elif result is None:
            payload = b""
        else:
            payload = bytes(result)
        if PyBytes_GET_SIZE(payload) > self.conn.core.max_send:
            self.finish(StatusCode.RESOURCE_EXHAUSTED,
                        "grpc: trying to send message larger than max (%d vs. %d)"
                        % (PyBytes_GET_SIZE(payload), self.conn.core.max_send))
            return
        self._queue(payload)
        self.finish(StatusCode.OK, None)

    cdef void _queue(self, bytes payload):
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        if self.cur is None and self.hdr_off == self.hdr_len:
            self._load(payload, True)
        else:
            if self.pending is None:
                self.pending = collections.deque()
            self.pending.append(payload)
        self.out_bytes += 5 + n
        if not self.headers_sent:
            self._submit_headers()
        else:
            nghttp2_session_resume_data(self.conn.session, self.sid)

    cdef void _submit_headers(self):
        cdef nghttp2_nv nva[3]
        cdef nghttp2_data_provider prd
        _nv(&nva[0], S_STATUS, 7, S_200, 3, NOCOPY)
        _nv(&nva[1], S_CT, 12, S_GRPC, 16, NOCOPY)
        _nv(&nva[2], S_ACCEPT_ENC, 20, S_IDENTITY, 8, NOCOPY)
        prd.source.ptr = <void*>self
        prd.read_callback = _data_read
        self.headers_sent = True
        self.send_trailers = True
        nghttp2_submit_response(self.conn.session, self.sid, nva, 3, &prd)
        self.conn.on_response_sent()

    cdef void finish(self, int code, str message):
        """End the call with a status: trailers after the data, or trailers-only."""
        cdef nghttp2_nv nva[4]
        cdef bytes msg
        if self.finished or self.closed:
            return
        self.finished = True
        self.status = code
        self.status_msg = message
        if self.headers_sent:
            nghttp2_session_resume_data(self.conn.session, self.sid)
            return
        # Trailers-only response.
        code_b = str(code).encode()
        _nv(&nva[0], S_STATUS, 7, S_200, 3, NOCOPY)
        _nv(&nva[1], S_CT, 12, S_GRPC, 16, NOCOPY)
        _nv(&nva[2], S_GSTATUS, 11, <char*>code_b, len(code_b), NGHTTP2_NV_FLAG_NO_COPY_NAME)
        if message:
            msg = percent_encode(message)
            _nv(&nva[3], S_GMESSAGE, 12, <char*>msg, len(msg), NGHTTP2_NV_FLAG_NO_COPY_NAME)
            nghttp2_submit_response(self.conn.session, self.sid, nva, 4, NULL)
        else:
            nghttp2_submit_response(self.conn.session, self.sid, nva, 3, NULL)
        self.conn.on_response_sent()

    cdef inline void _load(self, bytes payload, bint framed):
        """Make ``payload`` the current outgoing message."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        # Like grpc-go, sending data forgives ping strikes: gRPC clients send BDP
        # pings while a stream is busy, and those are not abuse.
        self.conn.on_response_sent()
        if framed:
            self.hdr[0] = 0
            self.hdr[1] = <char>((n >> 24) & 0xFF)
            self.hdr[2] = <char>((n >> 16) & 0xFF)
            self.hdr[3] = <char>((n >> 8) & 0xFF)
            self.hdr[4] = <char>(n & 0xFF)
            self.hdr_len = 5
        else:
            self.hdr_len = 0
        self.hdr_off = 0
        self.cur = payload if n else None
        self.cur_off = 0

    cdef ssize_t fill(self, uint8_t* buf, size_t length, uint32_t* flags):
        """nghttp2 pulls DATA bytes (the data provider's read callback)."""
        cdef size_t done = 0, take, avail
        cdef bytes chunk
        cdef nghttp2_nv nva[2]
        cdef bytes code_b, msg
        while done < length:
            if self.hdr_off < self.hdr_len:
                take = self.hdr_len - self.hdr_off
                if take > length - done:
                    take = length - done
                memcpy(buf + done, self.hdr + self.hdr_off, take)
                self.hdr_off += take
                done += take
            elif self.cur is not None:
                chunk = self.cur
                avail = PyBytes_GET_SIZE(chunk) - self.cur_off
                take = length - done
                if take > avail:
                    take = avail
                memcpy(buf + done, PyBytes_AS_STRING(chunk) + self.cur_off, take)
                done += take
                self.cur_off += take
                if self.cur_off == PyBytes_GET_SIZE(chunk):
                    self.cur = None
            elif self.pending:
                self._load(self.pending.popleft(), True)
            else:
                break
        self.out_bytes -= done
        if self.drain_waiter is not None and self.out_bytes <= self.conn.core.stream_high // 2:
            w = self.drain_waiter
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)
        if self.out_bytes == 0:
            if self.finished:
                flags[0] |= NGHTTP2_DATA_FLAG_EOF
                if self.send_trailers:
                    flags[0] |= NGHTTP2_DATA_FLAG_NO_END_STREAM
                    if self.status == 0:
                        _nv(&nva[0], S_GSTATUS, 11, S_0, 1, NOCOPY)
                        nghttp2_submit_trailer(self.conn.session, self.sid, nva, 1)
                    else:
                        code_b = str(self.status).encode()
                        _nv(&nva[0], S_GSTATUS, 11, <char*>code_b, len(code_b),
                            NGHTTP2_NV_FLAG_NO_COPY_NAME)
                        if self.status_msg:
                            msg = percent_encode(self.status_msg)
                            _nv(&nva[1], S_GMESSAGE, 12, <char*>msg, len(msg),
                                NGHTTP2_NV_FLAG_NO_COPY_NAME)
                            nghttp2_submit_trailer(self.conn.session, self.sid, nva, 2)
                        else:
                            nghttp2_submit_trailer(self.conn.session, self.sid, nva, 1)
            elif done == 0:
                return NGHTTP2_ERR_DEFERRED
        return done

    # -- streaming handlers' send --------------------------------------------

    async def send(self, msg):
        """Queue one response message; waits while this stream's buffer is full."""
        if self.closed or self.finished:
            raise asyncio.CancelledError("stream closed")
        if type(msg) is not bytes:
            msg = bytes(msg)
        if len(msg) > self.conn.core.max_send:
            raise GrpcError(StatusCode.RESOURCE_EXHAUSTED,
                            "grpc: trying to send message larger than max (%d vs. %d)"
                            % (len(msg), self.conn.core.max_send))
        self._queue(msg)
        self.conn.schedule_flush()
        while self.out_bytes > self.conn.core.stream_high and not self.closed:
            self.drain_waiter = self.conn.core.loop.create_future()
            await self.drain_waiter
        if self.closed:
            raise asyncio.CancelledError("stream closed")

    # -- HTTP requests over h2 ------------------------------------------------

    async def _http(self, bytes body):
        cdef nghttp2_nv* nva
        headers = {k: (v if type(v) is str else v.decode("latin-1"))
                   for k, v in (self.metadata or {}).items()}
        if self.content_type is not None:
            headers["content-type"] = self.content_type.decode("latin-1")
        try:
            status, rheaders, rbody = await self.conn.call_http(
                (self.h2method or b"GET").decode("latin-1"),
                (self.path or b"/").decode("latin-1"), headers, body)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.exception("http handler failed")
            status, rheaders, rbody = 500, [("content-type", "text/plain")], str(exc).encode()
        if self.closed:
            return
        hs = [(b":status", str(status).encode())]
        for n, v in rheaders:
            ln = n.lower()
            if ln in ("connection", "transfer-encoding", "keep-alive", "content-length"):
                continue
            hs.append((ln.encode("latin-1"), str(v).encode("latin-1")))
        hs.append((b"content-length", str(len(rbody)).encode()))
        self._submit_raw(hs, bytes(rbody))
        self.conn.schedule_flush()

    cdef void _submit_raw(self, list hs, bytes body):
        cdef nghttp2_nv nva[64]
        cdef nghttp2_data_provider prd
        cdef int i = 0
        for n, v in hs[:64]:
            _nv(&nva[i], <char*>(<bytes>n), len(n), <char*>(<bytes>v), len(v), 0)
            i += 1
        self.headers_sent = True
        self.finished = True
        self.send_trailers = False
        if body:
            self._load(body, False)
            self.out_bytes = len(body)
            prd.source.ptr = <void*>self
            prd.read_callback = _data_read
            nghttp2_submit_response(self.conn.session, self.sid, nva, i, &prd)
        else:
            nghttp2_submit_response(self.conn.session, self.sid, nva, i, NULL)

    # -- close ---------------------------------------------------------------

    cdef void on_close(self, uint32_t error_code):
        self.closed = True
        self.release_all()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.requests is not None:
            self.requests.end()
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)
        self.cur = None
        self.pending = None
        self.hdr_off = self.hdr_len
        self.out_bytes = 0


cdef int _on_frame_send(nghttp2_session* session, const nghttp2_frame* frame,
                        void* user_data) noexcept:
    """After our END_STREAM on a call the client is still sending: reset it
    (NO_ERROR), as grpc-go does, so the client stops sending. A reset submitted
    earlier would overtake the response."""
    cdef void* p
    if frame.hd.type == NGHTTP2_HEADERS and frame.hd.flags & NGHTTP2_FLAG_END_STREAM:
        p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
        if p != NULL and (<_Stream>p).rst_after and not (<_Stream>p).remote_closed:
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame.hd.stream_id,
                                      NGHTTP2_NO_ERROR)
    return 0


cdef class _Stepper:
    """Drives a unary handler coroutine that suspended after its eager first step,
    the way a Task would but without one: each future it awaits gets a done
    callback that sends the coroutine on. ``cancel()`` and ``done()`` stand in for
    the Task's (deadline, RST_STREAM, connection loss). Inside, the handler has no
    current task: ``asyncio.timeout()`` is not available to unary handlers."""

    cdef _Stream stream
    cdef object coro
    cdef object waiting
    cdef bint finished
    cdef bint cancel_requested

    def __cinit__(self, _Stream stream, coro):
        self.stream = stream
        self.coro = coro

    def done(self):
        return self.finished

    def cancel(self, msg=None):
        if self.finished:
            return False
        self.cancel_requested = True
        w = self.waiting
        if w is not None:
            w.cancel()      # its callback then throws CancelledError in
        return True

    cdef void wait(self, value):
        if value is None:   # a bare yield (asyncio.sleep(0)): run again next turn
            self.stream.conn.core.loop.call_soon(self._wakeup, None)
            return
        blocking = getattr(value, "_asyncio_future_blocking", None)
        if blocking is None:
            self._step(RuntimeError(f"unary handler yielded {value!r}, not a future"))
            return
        value._asyncio_future_blocking = False
        self.waiting = value
        value.add_done_callback(self._wakeup)

    def _wakeup(self, fut):
        self.waiting = None
        if self.cancel_requested:
            self._step(asyncio.CancelledError())
        else:
            self._step(None)

    cdef void _step(self, exc):
        cdef PyObject* res = NULL
        cdef int r
        try:
            if exc is None:
                r = PyIter_Send(self.coro, None, &res)
                value = <object>res
                Py_DECREF(value)
            else:
                value = self.coro.throw(exc)
                r = 1
        except StopIteration as stop:
            self._end(stop.value, None)
            return
        except BaseException as e:
            self._end(None, e)
            return
        if r == 0:
            self._end(value, None)
        else:
            self.wait(value)

    cdef void _end(self, result, exc):
        self.finished = True
        self.coro = None
        self.stream.stepped_out(result, exc)


# ---------------------------------------------------------------------------
# nghttp2 callbacks (C); they never run user code
# ---------------------------------------------------------------------------

cdef int _on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                           void* user_data) noexcept:
    cdef _Conn conn = <_Conn>user_data
    cdef _Stream s
    if frame.hd.type != NGHTTP2_HEADERS or frame.headers.cat != NGHTTP2_HCAT_REQUEST:
        return 0
    try:
        if conn.buffered > 2 * conn.core.conn_budget:
            # Refused (the client may retry it); its headers and data are ignored.
            # (During shutdown, GOAWAY's last stream id does this for nghttp2.)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame.hd.stream_id,
                                      NGHTTP2_REFUSED_STREAM)
            return 0
        s = _Stream(conn, frame.hd.stream_id)
        conn.streams[frame.hd.stream_id] = s
        nghttp2_session_set_stream_user_data(session, frame.hd.stream_id, <void*>s)
    except BaseException:
        log.exception("begin_headers")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_header(nghttp2_session* session, const nghttp2_frame* frame,
                    const uint8_t* name, size_t namelen, const uint8_t* value,
                    size_t valuelen, uint8_t flags, void* user_data) noexcept:
    cdef void* p
    cdef int rv
    if frame.hd.type != NGHTTP2_HEADERS:
        return 0
    p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
    if p == NULL:
        return 0
    try:
        if frame.headers.cat != NGHTTP2_HCAT_REQUEST:
            return 0        # request trailers: ignored
        rv = (<_Stream>p).on_header(name, namelen, value, valuelen)
        if rv == -2:        # header list too large (HPACK bomb): nghttp2 resets it
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
    except BaseException:
        log.exception("on_header")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame,
                        void* user_data) noexcept:
    cdef _Conn conn = <_Conn>user_data
    cdef void* p
    cdef _Stream s
    cdef uint8_t t = frame.hd.type
    try:
        if t == NGHTTP2_HEADERS or t == NGHTTP2_DATA:
            p = nghttp2_session_get_stream_user_data(session, frame.hd.stream_id)
            if p == NULL:
                return 0
            s = <_Stream>p
            if t == NGHTTP2_HEADERS and s.kind == K_UNKNOWN:
                s.headers_done()
            if frame.hd.flags & NGHTTP2_FLAG_END_STREAM and not s.remote_closed:
                s.remote_end()
        elif t == NGHTTP2_PING:
            if not (frame.hd.flags & NGHTTP2_FLAG_ACK):
                conn.on_ping()
    except BaseException:
        log.exception("on_frame_recv")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef int _on_data_chunk(nghttp2_session* session, uint8_t flags, int32_t stream_id,
                        const uint8_t* data, size_t length, void* user_data) noexcept:
    cdef void* p = nghttp2_session_get_stream_user_data(session, stream_id)
    cdef _Conn conn = <_Conn>user_data
    if p == NULL:
        _consume_both(conn, stream_id, length)
        return 0
    try:
        (<_Stream>p).on_data(data, length)
    except BaseException:
        log.exception("on_data")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef inline void _consume_both(_Conn conn, int32_t sid, size_t n):
    nghttp2_session_consume_connection(conn.session, n)
    nghttp2_session_consume_stream(conn.session, sid, n)


cdef int _on_stream_close(nghttp2_session* session, int32_t stream_id,
                          uint32_t error_code, void* user_data) noexcept:
    cdef _Conn conn = <_Conn>user_data
    try:
        s = conn.streams.pop(stream_id, None)
        if s is not None:
            (<_Stream>s).on_close(error_code)
    except BaseException:
        log.exception("on_stream_close")
        return NGHTTP2_ERR_CALLBACK_FAILURE
    return 0


cdef ssize_t _data_read(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                        size_t length, uint32_t* data_flags, nghttp2_data_source* source,
                        void* user_data) noexcept:
    try:
        return (<_Stream>source.ptr).fill(buf, length, data_flags)
    except BaseException:
        log.exception("data_read")
        return NGHTTP2_ERR_CALLBACK_FAILURE


# ---------------------------------------------------------------------------
# One connection (the asyncio Protocol)
# ---------------------------------------------------------------------------

cdef class _Conn:
    cdef EngineCore core
    cdef nghttp2_session* session
    cdef object transport
    cdef public str peer
    cdef public str cn
    cdef int mode
    cdef bytes sniff
    cdef dict streams
    cdef list ready
    cdef bint in_recv
    cdef bint flush_scheduled
    cdef bint write_paused
    cdef bint goaway_sent
    cdef bint close_after_flush
    cdef Py_ssize_t buffered
    cdef Py_ssize_t conn_deferred
    cdef double last_ping
    cdef double last_rx            # loop time of the last bytes received
    cdef double ping_sent_at       # our keepalive PING in flight since (< 0: none)
    cdef int ping_strikes
    cdef object flush_cb
    cdef bytearray wbuf            # reused to join one flush's frames
    # HTTP/1.x
    cdef bytearray h1buf
    cdef public int h1_busy
    cdef object h1_task
    cdef bint h1_close

    def __cinit__(self, EngineCore core):
        self.core = core
        self.session = NULL
        self.mode = M_SNIFF
        self.sniff = b""
        self.streams = {}
        self.ready = []
        self.peer = ""
        self.cn = ""
        self.last_ping = -1.0
        self.ping_sent_at = -1.0
        self.flush_cb = self._flush_soon
        self.wbuf = bytearray()

    def __dealloc__(self):
        if self.session != NULL:
            nghttp2_session_del(self.session)
            self.session = NULL

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.last_rx = self.core.loop.time()
        self.core.conns.add(self)
        pn = transport.get_extra_info("peername")
        if pn:
            self.peer = ("ipv6:[%s]:%d" % pn[:2]) if ":" in pn[0] else "ipv4:%s:%d" % pn[:2]
        cert = transport.get_extra_info("peercert")   # only a verified client certificate
        if cert:
            self.cn = certificate_cn(cert)

    def data_received(self, data):
        self.last_rx = self.core.loop.time()
        if self.mode == M_H2:
            self._h2_recv(data)
        elif self.mode == M_SNIFF:
            self._sniff(bytes(data))
        elif self.mode == M_H1:
            self._h1_recv(data)

    def eof_received(self):
        if self.mode == M_H1 and self.h1_busy:
            self.h1_close = True
            return True      # keep the write side open for the response
        return False

    def connection_lost(self, exc):
        self.mode = M_CLOSED
        self.core.conns.discard(self)
        self._close_session()
        self.transport = None

    def pause_writing(self):
        # The peer is not reading: stop pulling DATA and stop reading its requests,
        # so a client that never reads costs a bounded amount of memory.
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.transport is not None and self.mode != M_CLOSED:
            self.transport.resume_reading()
            self.flush()

    # -- mode detection ------------------------------------------------------

    cdef void _sniff(self, bytes data):
        data = self.sniff + data
        n = min(len(data), PREFACE_LEN)
        if data[:n] == PREFACE[:n]:
            if len(data) < PREFACE_LEN:
                self.sniff = data
                return
            self.sniff = None
            self._start_h2()
            self._h2_recv(data)
            return
        self.sniff = None
        # An HTTP/1.x request line starts with a token (the method) and a space.
        head = data[:16]
        sp = head.find(b" ")
        if (sp > 0 and head[:sp].isalpha() and head[:sp].isupper()) or (
                sp < 0 and len(data) < 16 and data.isalpha() and data.isupper()):
            self.mode = M_H1
            self.h1buf = bytearray()
            self._h1_recv(data)
            return
        # Garbage: neither HTTP/2 nor HTTP/1.x.
        self.mode = M_CLOSED
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()

    cdef void _start_h2(self):
        cdef nghttp2_settings_entry iv[4]
        cdef EngineCore core = self.core
        if nghttp2_session_server_new2(&self.session, core.callbacks, <void*>self,
                                       core.option) != 0:
            raise MemoryError()
        self.mode = M_H2
        iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS
        iv[0].value = core.max_streams
        iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE
        iv[1].value = core.initial_window
        iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE
        iv[2].value = <uint32_t>core.max_header_list
        iv[3].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH
        iv[3].value = 0
        nghttp2_submit_settings(self.session, NGHTTP2_FLAG_NONE, iv, 4)
        if core.conn_window > 65535:
            nghttp2_session_set_local_window_size(self.session, NGHTTP2_FLAG_NONE, 0,
                                                  core.conn_window)

    # -- HTTP/2 --------------------------------------------------------------

    cdef void _h2_recv(self, data):
        cdef const uint8_t* p
        cdef Py_ssize_t n
        cdef ssize_t rv
        cdef const unsigned char[::1] view
        if type(data) is bytes:
            p = <const uint8_t*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            view = data
            p = &view[0] if view.shape[0] else NULL
            n = view.shape[0]
        self.in_recv = True
        try:
            rv = nghttp2_session_mem_recv(self.session, p, n)
        finally:
            self.in_recv = False
        if rv < 0:
            log.debug("closing %s: %s", self.peer, nghttp2_strerror(<int>rv).decode())
            self._run_ready()
            self.flush()
            self._close_transport()
            return
        self._run_ready()
        self.flush()

    cdef void _run_ready(self):
        cdef _Stream s
        cdef list ready
        while self.ready:
            ready = self.ready
            self.ready = []
            for s in ready:
                s.dispatch()

    cdef void account(self, Py_ssize_t n):
        """n DATA bytes arrived: hand back the connection window unless over budget."""
        self.buffered += n
        if self.buffered <= self.core.conn_budget and not self.conn_deferred:
            nghttp2_session_consume_connection(self.session, n)
        else:
            self.conn_deferred += n

    cdef void release(self, Py_ssize_t n):
        self.buffered -= n
        if self.conn_deferred and self.buffered <= self.core.conn_budget and \
                self.session != NULL:
            nghttp2_session_consume_connection(self.session, self.conn_deferred)
            self.conn_deferred = 0
            self.schedule_flush()

    cdef void on_ping(self):
        """gRPC keepalive enforcement (grpc-go's policy): a ping sooner than
        ping_min_time after the previous one is a strike; too many strikes end the
        connection with ENHANCE_YOUR_CALM "too_many_pings". Sending headers or data
        forgives the strikes."""
        now = self.core.loop.time()
        if self.last_ping >= 0 and now - self.last_ping < self.core.ping_min_time:
            self.ping_strikes += 1
            if self.ping_strikes > self.core.ping_max_strikes:
                self.goaway(NGHTTP2_ENHANCE_YOUR_CALM, b"too_many_pings")
                self.close_after_flush = True
        self.last_ping = now

    cdef void keepalive(self, double now):
        cdef EngineCore core = self.core
        if self.mode != M_H2 or self.session == NULL:
            return
        if self.ping_sent_at >= 0:
            if self.last_rx >= self.ping_sent_at:   # uvloop caches time per turn
                self.ping_sent_at = -1.0
            elif now - self.ping_sent_at > core.keepalive_timeout:
                log.info("closing %s: no keepalive answer in %.1fs", self.peer,
                         core.keepalive_timeout)
                self.abort()
            return
        if now - self.last_rx >= core.keepalive_time:
            self.ping_sent_at = now
            nghttp2_submit_ping(self.session, NGHTTP2_FLAG_NONE, NULL)
            self.flush()

    cdef inline void on_response_sent(self):
        self.ping_strikes = 0
        self.last_ping = -1.0

    cdef void schedule_flush(self):
        if not self.flush_scheduled and not self.in_recv and self.session != NULL:
            self.flush_scheduled = True
            self.core.loop.call_soon(self.flush_cb)

    def _flush_soon(self):
        self.flush_scheduled = False
        self.flush()

    cdef void flush(self):
        """Drain what nghttp2 wants to send into one transport.write."""
        cdef const uint8_t* p
        cdef ssize_t n
        cdef bytes first = None
        cdef bytearray more = None
        cdef Py_ssize_t total = 0, old
        if self.session == NULL or self.transport is None or self.write_paused \
                or self.in_recv:
            return
        while True:
            n = nghttp2_session_mem_send(self.session, &p)
            if n < 0:
                log.debug("mem_send: %s", nghttp2_strerror(<int>n).decode())
                self._close_transport()
                return
            if n == 0:
                break
            total += n
            if first is None:
                first = PyBytes_FromStringAndSize(<char*>p, n)
            else:
                if more is None:
                    more = self.wbuf
                    PyByteArray_Resize(more, PyBytes_GET_SIZE(first))
                    memcpy(PyByteArray_AS_STRING(more), PyBytes_AS_STRING(first),
                           PyBytes_GET_SIZE(first))
                old = PyByteArray_GET_SIZE(more)
                PyByteArray_Resize(more, old + n)
                memcpy(PyByteArray_AS_STRING(more) + old, p, n)
            if total > (4 << 20):
                self.schedule_flush()
                break
        if more is not None:
            self.transport.write(PyBytes_FromStringAndSize(PyByteArray_AS_STRING(more),
                                                           PyByteArray_GET_SIZE(more)))
            if PyByteArray_GET_SIZE(more) > (256 << 10):
                self.wbuf = bytearray()
            else:
                PyByteArray_Resize(more, 0)
        elif first is not None:
            self.transport.write(first)
        if self.close_after_flush or (not nghttp2_session_want_read(self.session) and
                                      not nghttp2_session_want_write(self.session)):
            self._close_transport()

    cdef void shutdown_notice(self):
        if self.mode == M_H2 and self.session != NULL:
            nghttp2_submit_shutdown_notice(self.session)
            self.flush()
        elif self.mode == M_H1 and not self.h1_busy:
            self._close_transport()
        elif self.mode == M_SNIFF:
            self._close_transport()

    cdef void goaway(self, uint32_t code, bytes debug):
        if self.mode == M_H2 and self.session != NULL and not self.goaway_sent:
            self.goaway_sent = True
            nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(self.session),
                                  code, <const uint8_t*>PyBytes_AS_STRING(debug), len(debug))
            self.flush()
        elif self.mode == M_H1:
            self.h1_close = True
            if not self.h1_busy:
                self._close_transport()

    cdef void abort(self):
        if self.transport is not None:
            self.transport.abort()
        self._close_session()

    cdef void _close_transport(self):
        if self.transport is not None:
            self.transport.close()

    cdef void _close_session(self):
        cdef _Stream s
        if self.session != NULL:
            for s in list(self.streams.values()):
                s.on_close(NGHTTP2_CANCEL)
            self.streams.clear()
            nghttp2_session_del(self.session)
            self.session = NULL
        self.mode = M_CLOSED

    # -- HTTP handler ----------------------------------------------------------

    async def call_http(self, method, path, headers, body):
        if self.core.http is None:
            return 404, [("content-type", "text/plain")], b"404 page not found\n"
        return await self.core.http(method, path, headers, body)

    # -- HTTP/1.x ------------------------------------------------------------

    cdef void _h1_recv(self, data):
        self.h1buf += data
        if len(self.h1buf) > self.core.max_recv + 65536:
            self.transport.pause_reading()
        if not self.h1_busy:
            self._h1_next()

    cdef void _h1_next(self):
        buf = self.h1buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 65536:
                self._h1_error(431, b"Request Header Fields Too Large")
            return
        try:
            head = bytes(buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            self._h1_error(400, b"Bad Request")
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._h1_error(411, b"Length Required")
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._h1_error(400, b"Bad Request")
            return
        if length < 0 or length > self.core.max_recv:
            self._h1_error(413, b"Payload Too Large")
            return
        if len(buf) < end + 4 + length:
            return
        body = bytes(buf[end + 4:end + 4 + length])
        del buf[:end + 4 + length]
        conn_hdr = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            keep = conn_hdr == "keep-alive"
        else:
            keep = conn_hdr != "close"
        if not keep:
            self.h1_close = True
        self.h1_busy = 1
        self.h1_task = self.core.loop.create_task(
            self._h1_serve(method, target, headers, body, version))

    async def _h1_serve(self, method, target, headers, body, version):
        try:
            status, rheaders, rbody = await self.call_http(method, target, headers, body)
        except Exception as exc:
            log.exception("http handler failed")
            status, rheaders, rbody = 500, [("content-type", "text/plain")], str(exc).encode()
        if self.transport is None:
            return
        out = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Status"))]
        for n, v in rheaders:
            if n.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            out.append("%s: %s\r\n" % (n, v))
        out.append("content-length: %d\r\n" % len(rbody))
        if self.h1_close or self.core.shutting_down:
            out.append("connection: close\r\n")
        out.append("\r\n")
        self.transport.write("".join(out).encode("latin-1") + bytes(rbody))
        self.h1_busy = 0
        if self.h1_close or self.core.shutting_down:
            self._close_transport()
            return
        self.transport.resume_reading()
        if self.h1buf:
            self._h1_next()

    cdef void _h1_error(self, int status, bytes reason):
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                             % (status, reason))
        self.mode = M_CLOSED
        self._close_transport()


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
            302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 409: "Conflict", 411: "Length Required",
            413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def libnghttp2_version():
    """Version of the libnghttp2 this module is linked against at run time."""
    return nghttp2_version(0).version_str.decode()
