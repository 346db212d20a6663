"""The pure-Python twin of the native engine's front: the connection sniffer that
serves HTTP/1.x on the client port and hands HTTP/2 connections on.

The grpcio engine cannot share its port with HTTP/1.1, so it listens on a Unix socket
and a front serves the public port. With the compiled engine that front is
NativeEngine (ext/engine/connection.pxi, ext/engine/http1.pxi); in pure-Python mode
(``KVCORE_PURE_PYTHON=1``) it is this module, which answers byte for byte the same
(tests/integration/engine/test_py_front_twin.py compares them):

* the first bytes choose: the HTTP/2 preface -> ``h2_passthrough(transport, first)``
  (kvcore/engine/splice.py: to grpcio); an HTTP/1.x request line -> served here by
  the ``http`` handler; anything else -> 400 and close;
* HTTP/1.x: one request at a time per connection (pipelined ones wait, reading
  pauses past the body cap + 64 KiB); bodies by content-length or chunked; header
  block over 64 KiB: 431; body over the cap (twice max_recv + 64 KiB): etcd's
  gateway answer, 429 JSON; malformed: 400 and close. Keep-alive as HTTP/1.1 (1.0
  only with "connection: keep-alive"). A handler's body is bytes (content-length)
  or an async iterator of chunks (chunked, waiting while the peer does not read);
* TLS through kvcore.tls.TLSListener; the verified client certificate's CN and
  the TLS flag reach the handler as CLIENT_CN_HEADER / CLIENT_TLS_HEADER.

A small parser rather than h11: the native front's answers (its header names and
order, its reason phrases, its limits and error bodies) are the spec here, and h11
writes and rejects differently (docs/decisions.md).
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable, Optional

from .base import CLIENT_CN_HEADER, CLIENT_TLS_HEADER, HttpHandler, certificate_cn, http_date

log = logging.getLogger("kvcore.engine.py_front")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_CAP = 65536

_SNIFF, _H1, _CLOSED = 0, 1, 2

# Go's http.StatusText, as etcd's answers carry them (v2's 412 among them).
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
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


class _Front:
    """What every connection of one PyFront shares."""

    def __init__(self, http: Optional[HttpHandler], max_recv: int,
                 h2_passthrough: Optional[Callable]):
        self.http = http
        self.max_recv = max_recv
        self.body_cap = 2 * max_recv + 65536
        self.h2_passthrough = h2_passthrough
        self.conns: set = set()
        self.loop = None
        self.shutting_down = False


class _Conn(asyncio.Protocol):
    """One client connection: sniffs, then serves HTTP/1.x or hands itself on."""

    def __init__(self, front: _Front):
        self.front = front
        self.transport = None
        self.mode = _SNIFF
        self.sniff = b""
        self.cn = ""
        self.tls = False
        self.buf = bytearray()
        self.busy = 0            # 1: a request is being served, 2: streaming its answer
        self.get = False         # that request is a GET (or HEAD)
        self.task: Optional[asyncio.Task] = None
        self.close_after = False
        self.write_paused = False
        self.drain: Optional[asyncio.Future] = None

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.front.conns.add(self)
        self.tls = transport.get_extra_info("ssl_object") is not None
        cert = transport.get_extra_info("peercert")   # only a verified client certificate
        if cert:
            self.cn = certificate_cn(cert)

    def data_received(self, data):
        if self.mode == _SNIFF:
            self._sniff(bytes(data))
        elif self.mode == _H1:
            self._recv(data)

    def eof_received(self):
        if self.mode == _H1 and self.busy:
            if self.busy == 2 or self.get:
                # Go's server ends a request on its read side's EOF: a v2 wait or a
                # streamed watch whose client went away ends now (connection_lost
                # cancels it). A GET has nothing to lose by it.
                return False
            self.close_after = True
            return True      # keep the write side open for a write's response
        return False

    def connection_lost(self, exc):
        self.mode = _CLOSED
        self.front.conns.discard(self)
        self.transport = None
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if self.busy and self.task is not None:
            self.task.cancel()   # nobody is left to read the answer (etcd: ctx canceled)

    def pause_writing(self):
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        if self.transport is not None and self.mode != _CLOSED:
            self.transport.resume_reading()

    # -- mode detection ------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        data = self.sniff + data
        n = min(len(data), len(PREFACE))
        if data[:n] == PREFACE[:n]:
            if len(data) < len(PREFACE):
                self.sniff = data
                return
            self.mode = _CLOSED
            self.front.conns.discard(self)
            transport, self.transport = self.transport, None
            if self.front.h2_passthrough is None:
                transport.close()     # no HTTP/2 server behind this front
                return
            self.front.h2_passthrough(transport, data)
            return
        self.sniff = b""
        if h1_request_start(data):
            self.mode = _H1
            self._recv(data)
            return
        self.mode = _CLOSED
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()

    # -- HTTP/1.x --------------------------------------------------------------

    def _recv(self, data) -> None:
        self.buf += data
        if len(self.buf) > self.front.body_cap + 65536:
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    def _next(self) -> None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > HEADER_CAP:
                self._error(431, b"Request Header Fields Too Large")
            return
        try:
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            self._error(400, b"Bad Request")
            return
        if go_bad_target(target):
            self.transport.write(GO_BAD_REQUEST)
            self.mode = _CLOSED
            self._close()
            return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            try:
                got = dechunk(buf, end + 4, self.front.body_cap)
            except ValueError:
                self._error(400, b"Bad Request")
                return
            except OverflowError as e:
                self._too_large(e.args[0])
                return
            if got is None:
                return
            body, consumed = got
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._error(400, b"Bad Request")
                return
            if length < 0:
                self._error(400, b"Bad Request")
                return
            if length > self.front.body_cap:
                self._too_large(length)
                return
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4:end + 4 + length])
            consumed = end + 4 + length
        del buf[:consumed]
        conn_hdr = headers.get("connection", "").lower()
        keep = conn_hdr == "keep-alive" if version == "HTTP/1.0" else conn_hdr != "close"
        if not keep:
            self.close_after = True
        self.busy = 1
        self.get = method in ("GET", "HEAD")
        self.task = self.front.loop.create_task(self._serve(method, target, headers, body))

    async def _serve(self, method, target, headers, body) -> None:
        try:
            status, rheaders, rbody = await self._call_http(method, target, headers, body)
        except Exception as exc:
            log.exception("http handler failed")
            status, rheaders, rbody = 500, [("content-type", "text/plain")], str(exc).encode()
        streaming = not isinstance(rbody, (bytes, bytearray))
        if self.transport is None:
            if streaming:
                await rbody.aclose()
            return
        out = ["HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))]
        dated = False
        for n, v in rheaders:
            ln = n.lower()
            if ln in ("content-length", "connection", "transfer-encoding"):
                continue
            if ln == "date":     # a proxied answer's own (Go adds one only when none is set)
                dated = True
            out.append("%s: %s\r\n" % (n, v))
        # Then what Go's net/http adds, in its order and spelling: Date,
        # Content-Length, Connection, Transfer-Encoding.
        if not dated:
            out.append("Date: %s\r\n" % http_date())
        if not streaming:
            out.append("Content-Length: %d\r\n" % len(rbody))
        closing = self.close_after or self.front.shutting_down
        if closing:
            out.append("Connection: close\r\n")
        if streaming:
            out.append("Transfer-Encoding: chunked\r\n")
        out.append("\r\n")
        if streaming:
            self.busy = 2
            self.transport.write("".join(out).encode("latin-1"))
            if not await self._stream(rbody):
                self._close()
                return
        else:
            self.transport.write("".join(out).encode("latin-1") + bytes(rbody))
        self.busy = 0
        if self.close_after or self.front.shutting_down:
            self._close()
            return
        self.transport.resume_reading()
        if self.buf:
            self._next()

    async def _stream(self, chunks) -> bool:
        """Write an async iterator of bytes as HTTP/1.1 chunks, waiting while the peer
        does not read. False when the connection went away or the stream failed."""
        try:
            async for chunk in chunks:
                if self.transport is None:
                    return False
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                while self.write_paused and self.transport is not None:
                    self.drain = self.front.loop.create_future()
                    await self.drain
                if self.transport is None:
                    return False
        except Exception:
            log.exception("http stream failed")
            return False
        finally:
            await chunks.aclose()
        if self.transport is None:
            return False
        self.transport.write(b"0\r\n\r\n")
        return True

    async def _call_http(self, method, path, headers, body):
        if self.front.http is None:
            return 404, [("content-type", "text/plain")], b"404 page not found\n"
        # Only the engine names the client certificate and TLS (a client's own
        # headers under those names are dropped).
        headers.pop(CLIENT_CN_HEADER, None)
        headers.pop(CLIENT_TLS_HEADER, None)
        if self.cn:
            headers[CLIENT_CN_HEADER] = self.cn
        if self.tls:
            headers[CLIENT_TLS_HEADER] = "1"
        return await self.front.http(method, path, headers, body)

    def _too_large(self, length: int) -> None:
        # As etcd's gateway, whose gRPC call fails on the server's receive limit.
        msg = "grpc: received message larger than max (%d vs. %d)" % (
            length, self.front.max_recv)
        body = ('{"error":"%s","code":8,"message":"%s"}' % (msg, msg)).encode()
        self.transport.write(b"HTTP/1.1 429 Too Many Requests\r\n"
                             b"content-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (len(body), body))
        self.mode = _CLOSED
        self._close()

    def _error(self, status: int, reason: bytes) -> None:
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                             % (status, reason))
        self.mode = _CLOSED
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- shutdown --------------------------------------------------------------

    def shutdown(self) -> None:
        """Idle connections close now; a busy one after its answer."""
        self.close_after = True
        if not self.busy:
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def dechunk(buf, pos: int, cap: int):
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


# An HTTP/1.x request line starts with a method, any RFC 9110 token (Go's net/http
# takes `get` or `M-SEARCH` and the handler answers 405, as etcd does), and a space,
# within the first 16 bytes; a shorter start without a space waits as HTTP/1.x. The
# HTTP/2 preface is matched before this, and TLS records never start with a token
# byte. Twin of ext/engine/connection.pxi h1_request_start.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789" \
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def h1_request_start(data: bytes) -> bool:
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


# Go's server refuses a request target url.ParseRequestURI refuses (a control
# byte, a bad %-escape in the path) with these bytes and a close, before any
# handler. Twin of ext/engine/http1.pxi go_bad_target.
GO_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Connection: close\r\n\r\n400 Bad Request")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def go_bad_target(target: str) -> bool:
    if any(c < " " or c == "\x7f" for c in target):
        return True
    path = target.partition("?")[0]
    i = path.find("%")
    while i >= 0:
        if i + 2 >= len(path) or path[i + 1] not in _HEXDIGITS or path[i + 2] not in _HEXDIGITS:
            return True
        i = path.find("%", i + 3)
    return False


class PyFront:
    """Serves HTTP/1.x on one port and hands HTTP/2 connections to
    ``h2_passthrough(transport, first_bytes)``; start/stop as NativeEngine's."""

    name = "py-front"

    def __init__(self, http: Optional[HttpHandler] = None, *,
                 max_receive_message_length: int = 2 * 1024 * 1024 + 512 * 1024,
                 h2_passthrough: Optional[Callable] = None):
        self._front = _Front(http, max_receive_message_length, h2_passthrough)
        self._server = None

    def protocol(self) -> _Conn:
        return _Conn(self._front)

    async def start(self, host: str, port: int, *, reuse_port: bool = True,
                    ssl_context=None, sock: Optional[socket.socket] = None,
                    allow_plaintext: bool = False,
                    alpn: tuple = ("h2", "http/1.1"), raw_route=None) -> int:
        """As NativeEngine.start: ``sock`` (inherited, listening) or host:port;
        with ``ssl_context`` TLS (ALPN ``alpn``), ``allow_plaintext`` and
        ``raw_route`` as kvcore.tls.TLSListener's."""
        loop = asyncio.get_running_loop()
        self._front.loop = loop
        self._front.shutting_down = False
        if ssl_context is not None:
            try:
                ssl_context.set_alpn_protocols(list(alpn))
            except (AttributeError, NotImplementedError):
                pass
            from kvcore.tls import TLSListener, listen_socket
            if sock is None:
                sock = listen_socket(host, port, reuse_port=reuse_port)
            self._server = TLSListener(sock, ssl_context, self.protocol,
                                       allow_plaintext=allow_plaintext, raw_route=raw_route)
            self._server.start()
        elif sock is not None:
            from .shared_accept import SharedListener
            self._server = SharedListener(sock, self.protocol)
            self._server.start()
        else:
            self._server = await loop.create_server(
                self.protocol, host, port, reuse_port=reuse_port or None, backlog=1024)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, close idle connections, let answers in progress finish
        for up to ``grace`` seconds, then abort the rest."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        front = self._front
        front.shutting_down = True
        for c in list(front.conns):
            c.shutdown()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while any(c.busy for c in front.conns) and loop.time() < end:
            await asyncio.sleep(0.01)
        for c in list(front.conns):
            c.abort()
        await asyncio.sleep(0)

    def stats(self) -> dict:
        return {"connections": len(self._front.conns)}
