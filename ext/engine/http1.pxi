# HTTP/1.x on the gRPC port (included by grpc_engine.pyx).
#
# Contract: a connection whose first bytes are not the HTTP/2 preface but look like an
# HTTP/1.x request line is served here (/health, /version, /metrics, the /v3 JSON
# gateway) by the engine's ``http`` handler, one request at a time per connection
# (``h1_busy``; pipelined requests wait in ``h1buf``, reading pauses past the body
# cap + 64 KiB). Bodies by content-length or chunked; header block over 64 KiB: 431;
# body over the cap (twice max_recv + 64 KiB: room for base64 JSON): etcd's gateway
# answer, 429 JSON; malformed: 400 and close. Keep-alive as HTTP/1.1 (1.0 only with
# "connection: keep-alive"). A handler's body is bytes (sent with content-length) or
# an async iterator of chunks (sent chunked, waiting while the peer does not read).


cdef Py_ssize_t _h1_body_cap(_Conn conn):
    return 2 * conn.core.max_recv + 65536


cdef void _h1_recv(_Conn conn, data):
    conn.h1buf += data
    if len(conn.h1buf) > _h1_body_cap(conn) + 65536:
        conn.transport.pause_reading()
    if not conn.h1_busy:
        _h1_next(conn)


cdef void _h1_next(_Conn conn):
    buf = conn.h1buf
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            _h1_error(conn, 431, b"Request Header Fields Too Large")
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
        _h1_error(conn, 400, b"Bad Request")
        return
    if go_bad_target(target):
        conn.transport.write(GO_BAD_REQUEST)
        conn.mode = M_CLOSED
        conn._close_transport()
        return
    if "chunked" in headers.get("transfer-encoding", "").lower():
        try:
            got = _dechunk(buf, end + 4, _h1_body_cap(conn))
        except ValueError:
            _h1_error(conn, 400, b"Bad Request")
            return
        except OverflowError as e:
            _h1_too_large(conn, e.args[0])
            return
        if got is None:
            return
        body, consumed = got
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            _h1_error(conn, 400, b"Bad Request")
            return
        if length < 0:
            _h1_error(conn, 400, b"Bad Request")
            return
        if length > _h1_body_cap(conn):
            _h1_too_large(conn, length)
            return
        if len(buf) < end + 4 + length:
            return
        body = bytes(buf[end + 4:end + 4 + length])
        consumed = end + 4 + length
    del buf[:consumed]
    conn_hdr = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        keep = conn_hdr == "keep-alive"
    else:
        keep = conn_hdr != "close"
    if not keep:
        conn.h1_close = True
    conn.h1_busy = 1
    conn.h1_get = method in ("GET", "HEAD")
    conn.h1_task = conn.core.loop.create_task(
        _h1_serve(conn, method, target, headers, body, version))


async def _h1_serve(_Conn conn, method, target, headers, body, version):
    try:
        status, rheaders, rbody = await conn.call_http(method, target, headers, body)
    except Exception as exc:
        log.exception("http handler failed")
        status, rheaders, rbody = 500, [("content-type", "text/plain")], str(exc).encode()
    streaming = not isinstance(rbody, (bytes, bytearray))
    if conn.transport is None:
        if streaming:
            await rbody.aclose()
        return
    out = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Status"))]
    dated = False
    for n, v in rheaders:
        ln = n.lower()
        if ln in ("content-length", "connection", "transfer-encoding"):
            continue
        if ln == "date":     # a proxied answer's own (Go adds one only when none is set)
            dated = True
        out.append("%s: %s\r\n" % (n, v))
    # Then what Go's net/http adds, in its order and spelling: Date, Content-Length,
    # Connection, Transfer-Encoding.
    if not dated:
        out.append("Date: %s\r\n" % http_date())
    if not streaming:
        out.append("Content-Length: %d\r\n" % len(rbody))
    if conn.h1_close or conn.core.shutting_down:
        out.append("Connection: close\r\n")
    if streaming:
        out.append("Transfer-Encoding: chunked\r\n")
    out.append("\r\n")
    if streaming:
        conn.h1_busy = 2
        conn.transport.write("".join(out).encode("latin-1"))
        if not await _h1_stream(conn, rbody):
            conn._close_transport()
            return
    else:
        conn.transport.write("".join(out).encode("latin-1") + bytes(rbody))
    conn.h1_busy = 0
    if conn.h1_close or conn.core.shutting_down:
        conn._close_transport()
        return
    conn.transport.resume_reading()
    if conn.h1buf:
        _h1_next(conn)


async def _h1_stream(_Conn conn, chunks):
    """Write an async iterator of bytes as HTTP/1.1 chunks, waiting while the peer
    does not read (so a stream costs a bounded amount of memory). False when the
    connection went away or the stream failed."""
    try:
        async for chunk in chunks:
            if conn.transport is None:
                return False
            if chunk:
                conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            while conn.write_paused and conn.transport is not None:
                conn.h1_drain = conn.core.loop.create_future()
                await conn.h1_drain
            if conn.transport is None:
                return False
    except Exception:
        log.exception("http stream failed")
        return False
    finally:
        await chunks.aclose()
    if conn.transport is None:
        return False
    conn.transport.write(b"0\r\n\r\n")
    return True


cdef void _h1_too_large(_Conn conn, Py_ssize_t length):
    # As etcd's gateway, whose gRPC call fails on the server's receive limit.
    msg = "grpc: received message larger than max (%d vs. %d)" % (length, conn.core.max_recv)
    body = ('{"error":"%s","code":8,"message":"%s"}' % (msg, msg)).encode()
    conn.transport.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                         % (len(body), body))
    conn.mode = M_CLOSED
    conn._close_transport()


# Go's server refuses a request target url.ParseRequestURI refuses (a control
# byte, a bad %-escape in the path) with these bytes and a close, before any
# handler. Twin: kvcore/engine/py_front.py go_bad_target.
GO_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Connection: close\r\n\r\n400 Bad Request")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def go_bad_target(str target) -> bool:
    cdef Py_ssize_t i, n
    for c in target:
        if c < " " or c == "\x7f":
            return True
    path = target.partition("?")[0]
    n = len(path)
    i = path.find("%")
    while i >= 0:
        if i + 2 >= n or path[i + 1] not in _HEXDIGITS or path[i + 2] not in _HEXDIGITS:
            return True
        i = path.find("%", i + 3)
    return False


cdef void _h1_error(_Conn conn, int status, bytes reason):
    conn.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                         % (status, reason))
    conn.mode = M_CLOSED
    conn._close_transport()


def _dechunk(buf, Py_ssize_t pos, Py_ssize_t cap):
    """A chunked request body starting at ``pos`` of ``buf``: (body, end offset),
    None while incomplete; ValueError when malformed, OverflowError(size) over cap."""
    parts = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise ValueError("chunk size line")
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"x", 16)
        if size < 0:
            raise ValueError("chunk size")
        total += size
        if total > cap:
            raise OverflowError(total)
        pos = eol + 2
        if size == 0:
            while True:          # trailer lines up to an empty one
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ValueError("chunk end")
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


# Go's http.StatusText, as etcd's answers carry them (v2's 412 among them).
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
            301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required",
            412: "Precondition Failed", 413: "Request Entity Too Large",
            415: "Unsupported Media Type",
            416: "Requested Range Not Satisfiable", 421: "Misdirected Request",
            429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}
