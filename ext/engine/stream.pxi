# One call: _Stream and _Requests (included by grpc_engine.pyx).
#
# Contract: a _Stream is one HTTP/2 stream = one call. It lives in ``_Conn.streams``
# from HEADERS to nghttp2's on_stream_close (callbacks.pxi), which alone removes it;
# handlers may hold it longer, and every operation checks ``closed``. Receiving:
# headers decide the kind (unary, streaming, plain HTTP, rejected) when complete;
# messages come from framing.pxi. Dispatch runs after nghttp2's mem_recv returns
# (never inside a callback): a unary handler's first step runs eagerly and a
# _Stepper (stepper.pxi) resumes it if it suspends; streaming handlers and HTTP
# requests get a Task. Sending: headers once, messages via ``_queue`` (nghttp2 pulls
# them through ``fill``), then trailers or a trailers-only response, always with
# grpc-status. _Requests is a streaming call's async iterator of request messages.


cdef class _Requests:
    """Async iterator of a streaming call's request messages (ends at half-close)."""

    cdef object items
    cdef object waiter
    cdef bint ended
    cdef _Stream stream
    cdef object on_message         # listen(): messages by callback, no Task wake-up
    cdef object on_end

    def __cinit__(self, _Stream stream):
        self.items = collections.deque()
        self.waiter = None
        self.ended = False
        self.stream = stream
        self.on_message = None
        self.on_end = None

    def listen(self, on_message, on_end):
        """Take messages by callback from now on, ``on_message(msg)`` in the read
        callback that completed each (those already here first), and ``on_end()``
        at the client's half-close; not at a reset or lost connection (the handler
        is cancelled then). ``listen(None, None)`` stops."""
        self.on_message = on_message
        self.on_end = on_end
        while self.items and self.on_message is not None:
            msg = self.items.popleft()
            _fc_released(self.stream, len(msg) + 5)
            self.on_message(msg)
        if self.ended and self.on_end is not None:
            self._ended_listener()

    cdef void push(self, bytes msg):
        if self.on_message is not None and not self.items:
            _fc_released(self.stream, len(msg) + 5)
            try:
                self.on_message(msg)
            except Exception:
                log.exception("stream request listener failed")
            return
        self.items.append(msg)
        self._wake()

    cdef void end(self):
        self.ended = True
        if self.on_end is not None:
            self._ended_listener()
        self._wake()

    cdef void close(self):
        """The stream closed (reset, lost connection): no more messages."""
        self.on_message = self.on_end = None
        self.end()

    cdef void _ended_listener(self):
        on_end = self.on_end
        self.on_message = self.on_end = None
        try:
            on_end()
        except Exception:
            log.exception("stream request listener failed")

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
        _fc_released(self.stream, len(msg) + 5)
        return msg


cdef class _Stream:
    cdef int32_t sid
    cdef _Conn conn
    cdef int kind
    cdef bytes path
    cdef bytes h2method
    cdef object route
    cdef dict metadata
    cdef bytes content_type
    cdef bytes authority           # :authority (an HTTP request's Host)
    cdef bint grpc_ct
    cdef double timeout            # seconds; < 0: none
    cdef Py_ssize_t header_bytes
    cdef bytearray rbuf            # bytes of an incomplete message (None: none)
    cdef bytes big                 # a large incomplete message, filled in place (framing.pxi)
    cdef Py_ssize_t big_off        # bytes of ``big`` filled so far
    cdef object msg                # the unary request message
    cdef int nmsgs
    cdef bytes encoding            # grpc-encoding of the request (None: identity)
    cdef bint inflate_next         # the message being read is gzip-compressed
    cdef int err_code              # set when the request is refused while reading
    cdef str err_msg
    cdef bint discard
    cdef bint remote_closed
    cdef bint closed
    cdef bint dispatched
    cdef bint headers_sent
    cdef bint finished             # no more DATA will be queued
    cdef bint send_trailers
    cdef bint raw_out              # DATA is an HTTP body (no gRPC message prefix)
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
            elif nl == 10 and memcmp(name, b":authority", 10) == 0:
                self.authority = value[:vl]
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
        if nl == 13 and memcmp(name, b"grpc-encoding", 13) == 0:
            if v != b"identity":
                self.encoding = v
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
                self.err_msg = unknown_method_message(self.path.decode("latin-1"),
                                                      core.services)
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
            if self.encoding is not None and self.encoding != b"gzip":
                # grpc-go (etcd) has gzip only: any other compressor is refused up front.
                self.kind = K_REJECT
                self.discard = True
                self.err_code = StatusCode.UNIMPLEMENTED
                self.err_msg = ('grpc: Decompressor is not installed for grpc-encoding "%s"'
                                % self.encoding.decode("latin-1"))
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
        cdef EngineCore core = conn.core
        # Connection window: given back at once unless the connection buffers too much.
        _fc_account(conn, <Py_ssize_t>n)
        self.accounted += n
        if self.discard or self.kind == K_REJECT:
            _fc_release_all(self)
            nghttp2_session_consume_stream(conn.session, self.sid, n)
            return 0
        if self.kind == K_HTTP:
            if _rlen(self) + <Py_ssize_t>n > core.max_recv:
                self.refuse(StatusCode.RESOURCE_EXHAUSTED, "request body too large")
                nghttp2_session_consume_stream(conn.session, self.sid, n)
                return 0
            _rbuf_append(self, data, n)
            nghttp2_session_consume_stream(conn.session, self.sid, n)
            return 0
        # Stream window: deferred while a streaming handler lags behind its requests
        # (whole messages it has not taken yet); a partial message never waits.
        if self.kind == K_STREAM and self.queued > core.stream_high:
            self.deferred += n
        else:
            nghttp2_session_consume_stream(conn.session, self.sid, n)
        return _frame_in(self, data, n)

    cdef void _message(self, bytes msg):
        if self.inflate_next:
            self.inflate_next = False
            msg = _inflate(self, msg)
            if msg is None:
                return
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
        self.big = None
        _fc_release_all(self)
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

    cdef void remote_end(self):
        self.remote_closed = True
        if self.kind == K_UNARY or self.kind == K_HTTP:
            if self.kind == K_UNARY and _rlen(self):
                # grpc-go's (etcd's) answer to a cut-off message: io.ErrUnexpectedEOF.
                self.refuse(StatusCode.UNKNOWN, "unexpected EOF")
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
                        "peer": conn.peer, "deadline": deadline, "common_name": conn.cn,
                        "framed_send": True,
                        "send_nowait": self.send_nowait if self.kind == K_STREAM else None}
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
                self.finish(StatusCode.UNKNOWN, "EOF")   # grpc-go's (etcd's) answer
                return
            msg = self.msg
            self.msg = None
            _fc_release_all(self)
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
            _fc_release_all(self)
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
            _load(self, payload, not self.raw_out)
        else:
            if self.pending is None:
                self.pending = collections.deque()
            self.pending.append(payload)
        self.out_bytes += n if self.raw_out else 5 + n
        if not self.headers_sent:
            self._submit_headers()
        else:
            nghttp2_session_resume_data(self.conn.session, self.sid)

    cdef void _submit_headers(self):
        # :status and content-type only, as grpc-go (etcd) answers: no
        # grpc-accept-encoding, which would make grpc-js stop gzipping its requests.
        cdef nghttp2_nv nva[2]
        cdef nghttp2_data_provider prd
        _nv(&nva[0], S_STATUS, 7, S_200, 3, NOCOPY)
        _nv(&nva[1], S_CT, 12, S_GRPC, 16, NOCOPY)
        prd.source.ptr = <void*>self
        prd.read_callback = _data_read
        self.headers_sent = True
        self.send_trailers = True
        nghttp2_submit_response(self.conn.session, self.sid, nva, 2, &prd)
        _ka_forgive(self.conn)

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
        _ka_forgive(self.conn)

    cdef ssize_t fill(self, uint8_t* buf, size_t length, uint32_t* flags):
        """nghttp2 pulls DATA bytes (the data provider's read callback)."""
        cdef size_t done
        cdef nghttp2_nv nva[2]
        cdef bytes code_b, msg
        done = _frame_out(self, buf, length)
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
        """Queue one response message, or a Framed batch of them; waits while this
        stream's buffer is full."""
        if self.closed or self.finished:
            raise asyncio.CancelledError("stream closed")
        if type(msg) is Framed:
            self._queue_framed(msg)
        else:
            if type(msg) is not bytes:
                msg = bytes(msg)
            self._queue_checked(msg)
        self.conn.schedule_flush()
        while self.out_bytes > self.conn.core.stream_high and not self.closed:
            self.drain_waiter = self.conn.core.loop.create_future()
            await self.drain_waiter
        if self.closed:
            raise asyncio.CancelledError("stream closed")

    def send_nowait(self, msg):
        """send() without waiting: True if queued; False (nothing queued) when the
        stream is closed, its buffer is over the high-water mark or the message is
        refused, so that the caller's send() waits or raises as it would."""
        if self.closed or self.finished or self.out_bytes > self.conn.core.stream_high:
            return False
        try:
            if type(msg) is Framed:
                if len(msg.data) > self.conn.core.max_send:
                    return False    # send() checks its messages one by one
                self._queue_framed(msg)
            else:
                self._queue_checked(msg if type(msg) is bytes else bytes(msg))
        except GrpcError:
            return False
        self.conn.schedule_flush()
        return True

    cdef int _queue_checked(self, bytes msg) except -1:
        if PyBytes_GET_SIZE(msg) > self.conn.core.max_send:
            raise GrpcError(StatusCode.RESOURCE_EXHAUSTED,
                            "grpc: trying to send message larger than max (%d vs. %d)"
                            % (PyBytes_GET_SIZE(msg), self.conn.core.max_send))
        self._queue(msg)
        return 0

    cdef int _queue_framed(self, batch) except -1:
        """Messages already gRPC-prefixed: queued as they are, in one piece unless
        the whole is over the send limit (then each message is checked alone)."""
        cdef bytes data = batch.data
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), pos = 0, length
        cdef const uint8_t* p
        if n > self.conn.core.max_send:
            p = <const uint8_t*>PyBytes_AS_STRING(data)
            while pos + 5 <= n:
                length = ((<Py_ssize_t>p[pos + 1] << 24) | (<Py_ssize_t>p[pos + 2] << 16)
                          | (<Py_ssize_t>p[pos + 3] << 8) | <Py_ssize_t>p[pos + 4])
                self._queue_checked(data[pos + 5:pos + 5 + length])
                pos += 5 + length
            return 0
        if self.cur is None and self.hdr_off == self.hdr_len:
            _load(self, data, False)
        else:
            if self.pending is None:
                self.pending = collections.deque()
            self.pending.append((data,))    # a tuple: already framed
        self.out_bytes += n
        if not self.headers_sent:
            self._submit_headers()
        else:
            nghttp2_session_resume_data(self.conn.session, self.sid)
        return 0

    # -- HTTP requests over h2 ------------------------------------------------

    async def _http(self, bytes body):
        cdef nghttp2_nv* nva
        headers = {k: (v if type(v) is str else v.decode("latin-1"))
                   for k, v in (self.metadata or {}).items()}
        if self.content_type is not None:
            headers["content-type"] = self.content_type.decode("latin-1")
        if self.authority is not None and "host" not in headers:
            headers["host"] = self.authority.decode("latin-1")
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
            if not isinstance(rbody, (bytes, bytearray)):
                await rbody.aclose()
            return
        hs = [(b":status", str(status).encode())]
        for n, v in rheaders:
            ln = n.lower()
            if ln in ("connection", "transfer-encoding", "keep-alive", "content-length"):
                continue
            hs.append((ln.encode("latin-1"), str(v).encode("latin-1")))
        if not isinstance(rbody, (bytes, bytearray)):
            await self._http_stream(hs, rbody)
            return
        hs.append((b"content-length", str(len(rbody)).encode()))
        self._submit_raw(hs, bytes(rbody))
        self.conn.schedule_flush()

    async def _http_stream(self, list hs, chunks):
        """A streaming gateway route over HTTP/2 (as etcd's gateway serves it over
        h2): one DATA run of the chunks, waiting while the peer does not read."""
        self.raw_out = True
        self._submit_raw(hs, None)
        self.conn.schedule_flush()
        try:
            async for chunk in chunks:
                if self.closed:
                    break
                if not chunk:
                    continue
                self._queue(bytes(chunk))
                self.conn.schedule_flush()
                while self.out_bytes > self.conn.core.stream_high and not self.closed:
                    self.drain_waiter = self.conn.core.loop.create_future()
                    await self.drain_waiter
        finally:
            await chunks.aclose()
        if not self.closed:
            self.finished = True
            nghttp2_session_resume_data(self.conn.session, self.sid)
            self.conn.schedule_flush()

    cdef void _submit_raw(self, list hs, bytes body):
        """An HTTP response: headers, then ``body`` whole, or (None) the DATA that
        ``_queue`` adds until ``finished``."""
        cdef nghttp2_nv nva[64]
        cdef nghttp2_data_provider prd
        cdef int i = 0
        for n, v in hs[:64]:
            _nv(&nva[i], <char*>(<bytes>n), len(n), <char*>(<bytes>v), len(v), 0)
            i += 1
        self.headers_sent = True
        self.send_trailers = False
        if body is None:
            prd.source.ptr = <void*>self
            prd.read_callback = _data_read
            nghttp2_submit_response(self.conn.session, self.sid, nva, i, &prd)
            return
        self.finished = True
        if body:
            _load(self, body, False)
            self.out_bytes = len(body)
            prd.source.ptr = <void*>self
            prd.read_callback = _data_read
            nghttp2_submit_response(self.conn.session, self.sid, nva, i, &prd)
        else:
            nghttp2_submit_response(self.conn.session, self.sid, nva, i, NULL)

    # -- close ---------------------------------------------------------------

    cdef void on_close(self, uint32_t error_code):
        self.closed = True
        _fc_release_all(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.requests is not None:
            self.requests.close()
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)
        self.cur = None
        self.pending = None
        self.hdr_off = self.hdr_len
        self.out_bytes = 0
