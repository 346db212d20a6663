# One connection: _Conn, the asyncio Protocol (included by grpc_engine.pyx).
#
# Contract: owns its nghttp2 session (deleted in _close_session / __dealloc__, before
# the _Conn can go away; the session's user_data points back at it). The first bytes
# choose the mode: the HTTP/2 preface starts a session, an HTTP/1.x request line hands
# the connection to http1.pxi, anything else gets 400 and close. Writes are batched:
# ``flush`` drains everything nghttp2 wants to send into one transport.write per
# data_received and per loop turn (``schedule_flush``). pause/resume_writing stop and
# restart reading and DATA, so a peer that does not read costs bounded memory.


cdef class _Conn:
    cdef EngineCore core
    cdef nghttp2_session* session
    cdef object transport
    cdef public str peer
    cdef public str cn
    cdef public bint tls
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
    cdef bint h1_get               # the request being served is a GET (or HEAD)
    cdef object h1_drain           # a streaming response waits here while paused

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
        self.tls = transport.get_extra_info("ssl_object") is not None
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
            _h1_recv(self, data)

    def eof_received(self):
        if self.mode == M_H1 and self.h1_busy:
            if self.h1_busy == 2 or self.h1_get:
                # Go's server ends a request on its read side's EOF (the request's
                # context, CloseNotify): a v2 wait or a streamed watch whose client
                # went away ends now (connection_lost cancels it), not at its next
                # event. A GET has nothing to lose by it.
                return False
            self.h1_close = True
            return True      # keep the write side open for a write's response
        return False

    def connection_lost(self, exc):
        self.mode = M_CLOSED
        self.core.conns.discard(self)
        self._close_session()
        self.transport = None
        if self.h1_busy and self.h1_task is not None:
            self.h1_task.cancel()   # nobody is left to read the answer (etcd: ctx canceled)

    def pause_writing(self):
        # The peer is not reading: stop pulling DATA and stop reading its requests,
        # so a client that never reads costs a bounded amount of memory.
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.h1_drain is not None and not self.h1_drain.done():
            self.h1_drain.set_result(None)
        if self.transport is not None and self.mode != M_CLOSED:
            self.transport.resume_reading()
            self.flush()

    # -- mode detection ------------------------------------------------------
    # (h1_request_start, the HTTP/1.x rule, is at the end of this file)

    cdef void _sniff(self, bytes data):
        data = self.sniff + data
        n = min(len(data), PREFACE_LEN)
        if data[:n] == PREFACE[:n]:
            if len(data) < PREFACE_LEN:
                self.sniff = data
                return
            self.sniff = None
            if self.core.h2_passthrough is not None:
                self.mode = M_CLOSED
                self.core.conns.discard(self)
                transport, self.transport = self.transport, None
                self.core.h2_passthrough(transport, data)
                return
            self._start_h2()
            self._h2_recv(data)
            return
        self.sniff = None
        if h1_request_start(data):
            self.mode = M_H1
            self.h1buf = bytearray()
            _h1_recv(self, data)
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

    cdef void schedule_flush(self):
        if not self.flush_scheduled and not self.in_recv and self.session != NULL:
            self.flush_scheduled = True
            self.core.loop.call_soon(self.flush_cb)

    def _flush_soon(self):
        self.flush_scheduled = False
        self.flush()

    cdef void flush(self):
        """Drain what nghttp2 wants to send into one transport.write (writelines
        for a large response: its DATA frames are not copied into one buffer, and
        a growing buffer would be copied again at every resize)."""
        cdef const uint8_t* p
        cdef ssize_t n
        cdef bytes first = None
        cdef bytearray more = None
        cdef list chunks = None
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
            elif chunks is not None:
                chunks.append(PyBytes_FromStringAndSize(<char*>p, n))
            elif total > (64 << 10):
                # Large: the frames go out as they are (writev), no joining.
                chunks = [first] if more is None else [
                    PyBytes_FromStringAndSize(PyByteArray_AS_STRING(more),
                                              PyByteArray_GET_SIZE(more))]
                if more is not None:
                    PyByteArray_Resize(more, 0)
                    more = None
                chunks.append(PyBytes_FromStringAndSize(<char*>p, n))
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
        if chunks is not None:
            self.transport.writelines(chunks)
        elif more is not None:
            self.transport.write(PyBytes_FromStringAndSize(PyByteArray_AS_STRING(more),
                                                           PyByteArray_GET_SIZE(more)))
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
        # The verified client certificate's CN, and whether TLS carries the
        # request, go to the handler as headers (ones a client sent under those
        # names are dropped first).
        headers.pop(CLIENT_CN_HEADER, None)
        headers.pop(CLIENT_TLS_HEADER, None)
        if self.cn:
            headers[CLIENT_CN_HEADER] = self.cn
        if self.tls:
            headers[CLIENT_TLS_HEADER] = "1"
        return await self.core.http(method, path, headers, body)


# An HTTP/1.x request line starts with a method, any RFC 9110 token (Go's net/http
# takes `get` or `M-SEARCH` and the handler answers 405, as etcd does), and a space,
# within the first 16 bytes; a shorter start without a space waits as HTTP/1.x. The
# HTTP/2 preface is matched before this, and TLS records never start with a token
# byte. Twin: kvcore/engine/py_front.py h1_request_start.
cdef bytes _TCHAR = b"!#$%&'*+-.^_`|~0123456789" \
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def h1_request_start(bytes data) -> bool:
    head = data[:16]
    sp = head.find(b" ")
    if sp < 0:
        if len(data) >= 16 or not data:
            return False
        head = data
    elif sp == 0:
        return False
    else:
        head = head[:sp]
    return not head.translate(None, _TCHAR)
