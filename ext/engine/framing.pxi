# gRPC message framing (included by grpc_engine.pyx).
#
# Contract: a gRPC message on the wire is [u8 compressed flag][u32 big-endian
# length][message]. Inbound, ``_frame_in`` cuts DATA chunks into messages without a
# copy when a message lies whole in one chunk; bytes of an incomplete message wait in
# ``_Stream.rbuf`` (None when empty) until ``_parse_buffered`` completes it, except
# that a message of BIG_MESSAGE bytes or more, once its prefix is known, is copied
# straight into a bytes object of its size (``_Stream.big``): one copy of a 1 MiB
# request instead of a growing buffer's copies plus one more to cut it out. Every
# prefix is checked first (``_check_prefix``): longer than max_recv, or compressed
# without a grpc-encoding, refuses the call (RESOURCE_EXHAUSTED / INTERNAL, as
# grpc-go); a compressed message of a gzip call is inflated (``_inflate``) before the
# call sees it. Answers go out uncompressed (grpc-go would use the caller's gzip). Outbound, ``_load``
# makes a message current (its 5-byte prefix in ``hdr``, the body in ``cur``) and
# ``_frame_out`` copies prefix, body and queued messages into nghttp2's buffer.
# Nothing here touches windows (flow_control.pxi) or dispatches calls (stream.pxi).


DEF BIG_MESSAGE = 65536


cdef inline Py_ssize_t _rlen(_Stream s):
    """Bytes of an incomplete message held (prefix included)."""
    if s.big is not None:
        return 5 + s.big_off
    return 0 if s.rbuf is None else PyByteArray_GET_SIZE(s.rbuf)


cdef void _big_start(_Stream s, Py_ssize_t length, const uint8_t* body, Py_ssize_t n):
    """Begin a large message: its bytes object, with the ``n`` body bytes so far."""
    s.big = PyBytes_FromStringAndSize(NULL, length)
    memcpy(PyBytes_AS_STRING(s.big), body, n)
    s.big_off = n


cdef Py_ssize_t _big_fill(_Stream s, const uint8_t* data, size_t n) except -1:
    """More of the large message; hands it on once whole. -> bytes of ``data`` used."""
    cdef Py_ssize_t want = PyBytes_GET_SIZE(s.big) - s.big_off
    cdef Py_ssize_t take = want if <Py_ssize_t>n > want else <Py_ssize_t>n
    cdef bytes msg
    memcpy(PyBytes_AS_STRING(s.big) + s.big_off, data, take)
    s.big_off += take
    if take == want:
        msg = s.big
        s.big = None
        s._message(msg)
    return take


cdef inline void _rbuf_append(_Stream s, const uint8_t* data, size_t n):
    if s.rbuf is None:
        s.rbuf = bytearray()
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(s.rbuf)
    PyByteArray_Resize(s.rbuf, old + <Py_ssize_t>n)
    memcpy(PyByteArray_AS_STRING(s.rbuf) + old, data, n)


cdef int _parse_buffered(_Stream s) except -1:
    """Cut whole messages off the front of ``s.rbuf``."""
    cdef Py_ssize_t have, length
    cdef const uint8_t* p
    cdef bytes msg
    while True:
        have = PyByteArray_GET_SIZE(s.rbuf)
        if have < 5:
            return 0
        p = <const uint8_t*>PyByteArray_AS_STRING(s.rbuf)
        length = ((<Py_ssize_t>p[1] << 24) | (<Py_ssize_t>p[2] << 16)
                  | (<Py_ssize_t>p[3] << 8) | <Py_ssize_t>p[4])
        if _check_prefix(s, p[0], length):
            return 0
        if have - 5 < length:
            if length >= BIG_MESSAGE:
                _big_start(s, length, p + 5, have - 5)
                s.rbuf = None
            return 0
        msg = PyBytes_FromStringAndSize(<char*>p + 5, length)
        del s.rbuf[:5 + length]
        s._message(msg)
        if s.discard:
            return 0


cdef int _check_prefix(_Stream s, uint8_t flag, Py_ssize_t length) except -1:
    """0 if the message may be read; 1 if the call was refused."""
    cdef EngineCore core = s.conn.core
    if length > core.max_recv:
        s.refuse(StatusCode.RESOURCE_EXHAUSTED,
                 "grpc: received message larger than max (%d vs. %d)"
                 % (length, core.max_recv))
        return 1
    if flag != 0:
        if s.encoding is None:
            s.refuse(StatusCode.INTERNAL,
                     "grpc: compressed flag set with identity or empty encoding")
            return 1
        s.inflate_next = True     # gzip (the only encoding headers_done lets through)
    return 0


cdef bytes _inflate(_Stream s, bytes msg):
    """A gzip-compressed request message, inflated; None if the call was refused.
    As grpc-go in etcd 3.5.1: the size the gzip trailer states is checked against
    max_recv first, then at most max_recv + 1 bytes are inflated."""
    cdef Py_ssize_t limit = s.conn.core.max_recv
    cdef Py_ssize_t n = PyBytes_GET_SIZE(msg)
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(msg)
    cdef Py_ssize_t size
    if n >= 4:
        size = (<Py_ssize_t>p[n - 4] | (<Py_ssize_t>p[n - 3] << 8)
                | (<Py_ssize_t>p[n - 2] << 16) | (<Py_ssize_t>p[n - 1] << 24))
        if size > limit:
            s.refuse(StatusCode.RESOURCE_EXHAUSTED,
                     "grpc: received message larger than max (%d vs. %d)" % (size, limit))
            return None
    try:
        out = zlib.decompressobj(31).decompress(msg, limit + 1)
    except zlib.error as e:
        s.refuse(StatusCode.INTERNAL, "grpc: failed to decompress the received message %s" % e)
        return None
    if PyBytes_GET_SIZE(out) > limit:
        s.refuse(StatusCode.RESOURCE_EXHAUSTED,
                 "grpc: received message larger than max (%d vs. %d)"
                 % (PyBytes_GET_SIZE(out), limit))
        return None
    return out


cdef inline void _load(_Stream s, bytes payload, bint framed):
    """Make ``payload`` the current outgoing message."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    # Like grpc-go, sending data forgives ping strikes: gRPC clients send BDP
    # pings while a stream is busy, and those are not abuse.
    _ka_forgive(s.conn)
    if framed:
        s.hdr[0] = 0
        s.hdr[1] = <char>((n >> 24) & 0xFF)
        s.hdr[2] = <char>((n >> 16) & 0xFF)
        s.hdr[3] = <char>((n >> 8) & 0xFF)
        s.hdr[4] = <char>(n & 0xFF)
        s.hdr_len = 5
    else:
        s.hdr_len = 0
    s.hdr_off = 0
    s.cur = payload if n else None
    s.cur_off = 0


cdef int _frame_in(_Stream s, const uint8_t* data, size_t n) except -1:
    """DATA bytes of a gRPC call: whole messages go to ``s._message`` straight from
    nghttp2's buffer; a partial one waits in ``s.rbuf``."""
    cdef Py_ssize_t off, have, length, used
    cdef const uint8_t* p
    cdef bytes msg
    if s.big is not None:
        used = _big_fill(s, data, n)
        if s.discard or used == <Py_ssize_t>n:
            return 0
        data += used
        n -= used
    if _rlen(s) == 0:
        p = data
        have = n
        off = 0
        while have - off >= 5:
            length = ((<Py_ssize_t>p[off + 1] << 24) | (<Py_ssize_t>p[off + 2] << 16)
                      | (<Py_ssize_t>p[off + 3] << 8) | <Py_ssize_t>p[off + 4])
            if _check_prefix(s, p[off], length):
                return 0
            if have - off - 5 < length:
                if length >= BIG_MESSAGE:
                    _big_start(s, length, p + off + 5, have - off - 5)
                    return 0
                break
            msg = PyBytes_FromStringAndSize(<char*>p + off + 5, length)
            off += 5 + length
            s._message(msg)
            if s.discard:
                return 0
        if off < have:
            _rbuf_append(s, data + off, n - off)
        return 0
    _rbuf_append(s, data, n)
    return _parse_buffered(s)


cdef size_t _frame_out(_Stream s, uint8_t* buf, size_t length):
    """Copy up to ``length`` outgoing bytes (prefix, then body, then the next pending
    message) into nghttp2's DATA buffer; -> bytes copied."""
    cdef size_t done = 0, take, avail
    cdef bytes chunk
    while done < length:
        if s.hdr_off < s.hdr_len:
            take = s.hdr_len - s.hdr_off
            if take > length - done:
                take = length - done
            memcpy(buf + done, s.hdr + s.hdr_off, take)
            s.hdr_off += take
            done += take
        elif s.cur is not None:
            chunk = s.cur
            avail = PyBytes_GET_SIZE(chunk) - s.cur_off
            take = length - done
            if take > avail:
                take = avail
            memcpy(buf + done, PyBytes_AS_STRING(chunk) + s.cur_off, take)
            done += take
            s.cur_off += take
            if s.cur_off == PyBytes_GET_SIZE(chunk):
                s.cur = None
        elif s.pending:
            item = s.pending.popleft()
            if type(item) is tuple:     # a Framed batch (prefixes included)
                _load(s, <bytes>(<tuple>item)[0], False)
            else:
                _load(s, item, not s.raw_out)
        else:
            break
    return done
