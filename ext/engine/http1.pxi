# HTTP/1.x on the gRPC port (included by grpc_engine.pyx).
#
# Contract: a connection whose first bytes are not the HTTP/2 preface but look like an
# HTTP/1.x request line is served here (/health, /version, /metrics, the /v3 JSON
# gateway) by the engine's ``http`` handler, one request at a time per connection
# (``h1_busy``; pipelined requests wait in ``h1buf``, reading pauses past max_recv +
# 64 KiB). Bodies need content-length (chunked: 411); header block over 64 KiB: 431;
# body over max_recv: 413; malformed: 400 and close. Keep-alive as HTTP/1.1 (1.0 only
# with "connection: keep-alive"); responses always carry content-length.


cdef void _h1_recv(_Conn conn, data):
    conn.h1buf += data
    if len(conn.h1buf) > conn.core.max_recv + 65536:
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
    if "chunked" in headers.get("transfer-encoding", "").lower():
        _h1_error(conn, 411, b"Length Required")
        return
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        _h1_error(conn, 400, b"Bad Request")
        return
    if length < 0 or length > conn.core.max_recv:
        _h1_error(conn, 413, b"Payload Too Large")
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
        conn.h1_close = True
    conn.h1_busy = 1
    conn.h1_task = conn.core.loop.create_task(
        _h1_serve(conn, method, target, headers, body, version))


async def _h1_serve(_Conn conn, method, target, headers, body, version):
    try:
        status, rheaders, rbody = await conn.call_http(method, target, headers, body)
    except Exception as exc:
        log.exception("http handler failed")
        status, rheaders, rbody = 500, [("content-type", "text/plain")], str(exc).encode()
    if conn.transport is None:
        return
    out = ["HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Status"))]
    for n, v in rheaders:
        if n.lower() in ("content-length", "connection", "transfer-encoding"):
            continue
        out.append("%s: %s\r\n" % (n, v))
    out.append("content-length: %d\r\n" % len(rbody))
    if conn.h1_close or conn.core.shutting_down:
        out.append("connection: close\r\n")
    out.append("\r\n")
    conn.transport.write("".join(out).encode("latin-1") + bytes(rbody))
    conn.h1_busy = 0
    if conn.h1_close or conn.core.shutting_down:
        conn._close_transport()
        return
    conn.transport.resume_reading()
    if conn.h1buf:
        _h1_next(conn)


cdef void _h1_error(_Conn conn, int status, bytes reason):
    conn.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                         % (status, reason))
    conn.mode = M_CLOSED
    conn._close_transport()


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
            302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 409: "Conflict", 411: "Length Required",
            413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}
