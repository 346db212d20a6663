# Keepalive policy (included by grpc_engine.pyx).
#
# Contract, grpc-go's server policy with etcd's flags: a client PING sooner than
# ``ping_min_time`` after the previous one is a strike; more than
# ``ping_max_strikes`` strikes end the connection with GOAWAY(ENHANCE_YOUR_CALM,
# "too_many_pings"); sending response headers or any DATA frame forgives the
# strikes (``_ka_forgive``). Server keepalive (--grpc-keepalive-interval/-timeout): one sweep
# over all connections every ``_ka_sweep_period`` seconds (EngineCore.start_keepalive);
# a connection silent for ``keepalive_time`` gets a PING, and is aborted if still
# silent ``keepalive_timeout`` later. Any bytes received count as an answer.


cdef void _ka_on_ping(_Conn conn):
    """gRPC keepalive enforcement (grpc-go's policy): a ping sooner than
    ping_min_time after the previous one is a strike; too many strikes end the
    connection with ENHANCE_YOUR_CALM "too_many_pings". Sending headers or data
    forgives the strikes."""
    now = conn.core.loop.time()
    if conn.last_ping >= 0 and now - conn.last_ping < conn.core.ping_min_time:
        conn.ping_strikes += 1
        if conn.ping_strikes > conn.core.ping_max_strikes:
            conn.goaway(NGHTTP2_ENHANCE_YOUR_CALM, b"too_many_pings")
            conn.close_after_flush = True
    conn.last_ping = now


cdef void _ka_check(_Conn conn, double now):
    cdef EngineCore core = conn.core
    if conn.mode != M_H2 or conn.session == NULL:
        return
    if conn.ping_sent_at >= 0:
        if conn.last_rx >= conn.ping_sent_at:   # uvloop caches time per turn
            conn.ping_sent_at = -1.0
        elif now - conn.ping_sent_at > core.keepalive_timeout:
            log.info("closing %s: no keepalive answer in %.1fs", conn.peer,
                     core.keepalive_timeout)
            conn.abort()
        return
    if now - conn.last_rx >= core.keepalive_time:
        conn.ping_sent_at = now
        nghttp2_submit_ping(conn.session, NGHTTP2_FLAG_NONE, NULL)
        conn.flush()


cdef inline void _ka_forgive(_Conn conn):
    conn.ping_strikes = 0
    conn.last_ping = -1.0


cdef double _ka_sweep_period(EngineCore core):
    return max(0.05, min(core.keepalive_time, core.keepalive_timeout) / 2)
