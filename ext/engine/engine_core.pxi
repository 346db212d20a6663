# EngineCore (included by grpc_engine.pyx).
#
# Contract: one per NativeEngine, shared by all its connections: the method table
# (path -> (kind, handler, path)), the limits and windows, the nghttp2 callbacks and
# options every session is created with, the set of open connections, and the
# server-wide operations NativeEngine calls (protocol factory, stats, the two halves of
# graceful shutdown, keepalive sweeps, abort). Built and configured from Python
# (kvcore/engine/native.py); owns the nghttp2 callbacks/option objects it frees.


cdef class EngineCore:
    """What every connection of one NativeEngine shares (built by native.py)."""

    cdef dict routes              # path bytes -> (kind, handler, path str)
    cdef object services          # the services served: grpc-go's UNIMPLEMENTED words
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
    # (transport, bytes read so far) -> None: takes over every HTTP/2 connection
    # (the grpcio engine's front hands them to grpcio); None: served here.
    cdef public object h2_passthrough
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
        self.services = methods.services()
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
        self.h2_passthrough = None

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
            self.sweeper = self.loop.call_later(_ka_sweep_period(self), self._sweep)

    def stop_keepalive(self):
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None

    def _sweep(self):
        cdef _Conn c
        now = self.loop.time()
        for c in list(self.conns):
            _ka_check(c, now)
        self.sweeper = self.loop.call_later(_ka_sweep_period(self), self._sweep)

    def abort_all(self):
        cdef _Conn c
        for c in list(self.conns):
            c.abort()
