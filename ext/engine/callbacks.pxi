# nghttp2 callbacks (included by grpc_engine.pyx).
#
# Contract: C functions nghttp2 calls during mem_recv/mem_send with the session's
# user_data (the _Conn, borrowed) and a stream's user data (its _Stream, borrowed
# from _Conn.streams). They never run user code and never raise: a Python error is
# logged and returned as NGHTTP2_ERR_CALLBACK_FAILURE (the connection ends); an
# over-long header list returns TEMPORAL_CALLBACK_FAILURE (that stream is reset).
# on_stream_close is the only place a _Stream leaves _Conn.streams.


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
                _ka_on_ping(conn)
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
        # grpc-go forgives ping strikes on every DATA frame it writes (not once per
        # message): a client's BDP pings while a large answer streams out are no abuse.
        _ka_forgive((<_Stream>source.ptr).conn)
        return (<_Stream>source.ptr).fill(buf, length, data_flags)
    except BaseException:
        log.exception("data_read")
        return NGHTTP2_ERR_CALLBACK_FAILURE


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
