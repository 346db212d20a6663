# Flow control (included by grpc_engine.pyx).
#
# Contract: nghttp2 runs with automatic WINDOW_UPDATE off; the engine hands windows
# back by "consuming" bytes. Connection window: every DATA byte is counted in
# ``_Conn.buffered`` until its call takes it (unary: at dispatch; streaming: when the
# handler reads the message; HTTP: at dispatch) and given back at once while the
# connection stays under ``conn_budget``; past it, ``conn_deferred`` holds it until
# ``_fc_release`` brings the connection back under. Stream window of a streaming
# call: deferred (``_Stream.deferred``) while its handler has more than
# ``stream_high`` bytes of whole messages not yet taken; a partial message never
# waits. So a slow reader costs bounded memory and a fast one never stalls. Sending
# side: the transport's pause/resume_writing (connection.pxi) stops pulling DATA.


cdef void _fc_account(_Conn conn, Py_ssize_t n):
    """n DATA bytes arrived: hand back the connection window unless over budget."""
    conn.buffered += n
    if conn.buffered <= conn.core.conn_budget and not conn.conn_deferred:
        nghttp2_session_consume_connection(conn.session, n)
    else:
        conn.conn_deferred += n


cdef void _fc_release(_Conn conn, Py_ssize_t n):
    conn.buffered -= n
    if conn.conn_deferred and conn.buffered <= conn.core.conn_budget and \
            conn.session != NULL:
        nghttp2_session_consume_connection(conn.session, conn.conn_deferred)
        conn.conn_deferred = 0
        conn.schedule_flush()


cdef void _fc_released(_Stream s, Py_ssize_t n):
    """A streaming handler took n bytes: give back windows."""
    cdef _Conn conn = s.conn
    s.queued -= n
    if n > s.accounted:
        n = s.accounted
    s.accounted -= n
    _fc_release(conn, n)
    if s.deferred and s.queued <= conn.core.stream_high and not s.closed:
        nghttp2_session_consume_stream(conn.session, s.sid, s.deferred)
        s.deferred = 0
        conn.schedule_flush()


cdef void _fc_release_all(_Stream s):
    if s.accounted:
        _fc_release(s.conn, s.accounted)
        s.accounted = 0


cdef inline void _consume_both(_Conn conn, int32_t sid, size_t n):
    """DATA of a stream nghttp2 no longer knows us for: give both windows back."""
    nghttp2_session_consume_connection(conn.session, n)
    nghttp2_session_consume_stream(conn.session, sid, n)
