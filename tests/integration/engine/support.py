"""Shared pieces of the engine tests: a server thread running either engine on its
own uvloop, the handlers the conformance suite calls, and a tiny HTTP/2 frame
writer for the robustness tests (raw sockets, 127.0.0.1 only)."""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import uvloop

from kvcore.engine.base import GrpcError, MethodTable, StatusCode
from kvcore.h2client.framing import hpack_int

HOST = "127.0.0.1"


class Probe:
    """What the handlers saw, read by the tests from the client thread."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.sent = 0
        self.last_ctx = None


def make_methods(probe: Probe) -> MethodTable:
    async def echo(req, ctx):
        probe.last_ctx = ctx
        return req

    async def meta(req, ctx):
        return ctx.metadata.get(req.decode(), "").encode()

    async def fail(req, ctx):
        code, _, msg = req.decode().partition(":")
        raise GrpcError(StatusCode(int(code)), msg)

    async def boom(req, ctx):
        raise ValueError("boom")

    async def sleep(req, ctx):
        probe.last_ctx = ctx
        try:
            await asyncio.sleep(float(req.decode()))
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise
        return b"slept"

    async def deadline(req, ctx):
        if ctx.deadline is None:
            return b"none"
        return b"%.3f" % (ctx.deadline - asyncio.get_running_loop().time())

    async def big(req, ctx):
        return b"b" * int(req.decode())

    async def server_stream(requests, send, ctx):
        async for req in requests:
            n = int(req.decode())
            for i in range(n):
                await send(b"%d" % i)

    async def bidi(requests, send, ctx):
        async for req in requests:
            await send(req + b"!")

    async def client_stream(requests, send, ctx):
        total = 0
        async for req in requests:
            total += len(req)
        await send(b"%d" % total)

    async def forever(requests, send, ctx):
        size = 1024
        async for req in requests:
            size = int(req.decode())
            break
        chunk = b"f" * size
        try:
            while True:
                await send(chunk)
                probe.sent += 1
        except BaseException:     # grpcio may end a blocked write with its own error
            probe.cancelled.set()
            raise

    async def stream_fail(requests, send, ctx):
        await send(b"one")
        raise GrpcError(StatusCode.FAILED_PRECONDITION, "after one")

    return MethodTable(
        unary={"/test.T/Echo": echo, "/test.T/Meta": meta, "/test.T/Fail": fail,
               "/test.T/Boom": boom, "/test.T/Sleep": sleep, "/test.T/Deadline": deadline,
               "/test.T/Big": big},
        stream={"/test.T/ServerStream": server_stream, "/test.T/Bidi": bidi,
                "/test.T/ClientStream": client_stream, "/test.T/Forever": forever,
                "/test.T/StreamFail": stream_fail})


async def http_handler(method, path, headers, body):
    if path == "/health":
        return 200, [("content-type", "application/json")], b'{"health":"true"}'
    if path == "/echo":
        return 200, [("content-type", "application/octet-stream"),
                     ("x-method", method)], body
    return 404, [("content-type", "text/plain")], b"404 page not found\n"


class ServerThread:
    """Runs one engine on its own uvloop in a daemon thread."""

    def __init__(self, factory, ssl_context=None):
        self.factory = factory
        self.ssl_context = ssl_context
        self.loop = None
        self.engine = None
        self.port = None
        self._ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("engine did not start")
        if self._error:
            raise self._error
        return self

    def _run(self):
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.engine = self.factory()
            kw = {"ssl_context": self.ssl_context} if self.ssl_context is not None else {}
            self.port = self.loop.run_until_complete(
                self.engine.start(HOST, 0, reuse_port=False, **kw))
        except BaseException as exc:   # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def call(self, fn, *args, timeout=30):
        """Run fn(*args) (a plain function) on the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self, grace=0.5):
        if self.loop is None or not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.engine.stop(grace), self.loop)
        fut.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


def wait_for(pred, timeout=10.0, interval=0.02) -> bool:
    """Poll pred() until true or timeout (a bound, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


# -- raw HTTP/2 ---------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def hpack_literal(name: bytes, value: bytes, index: bool = False) -> bytes:
    """A literal header field with a literal name, no Huffman coding."""
    head = b"\x40" if index else b"\x00"
    return head + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value


def hpack_indexed(index: int) -> bytes:
    return hpack_int(index, 7, 0x80)


def grpc_request_block(path: bytes, extra=()) -> bytes:
    hs = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
          (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
          (b"te", b"trailers")] + list(extra)
    return b"".join(hpack_literal(n, v) for n, v in hs)


def grpc_message(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def h2_connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return s


def read_frames(sock: socket.socket, until=None, timeout: float = 5.0, limit: int = 100000):
    """Read frames (type, flags, sid, payload) until EOF, until(frame) is true, the
    timeout or ``limit`` frames; returns (frames, eof)."""
    sock.settimeout(timeout)
    buf = b""
    frames = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(frames) < limit:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n])
            buf = buf[9 + n:]
            frames.append(f)
            if until is not None and until(f):
                return frames, False
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except OSError:
            return frames, True
        if not chunk:
            return frames, True
        buf += chunk
    return frames, False


def server_alive(port: int) -> bool:
    """A fresh connection still gets SETTINGS and an answer to PING."""
    with h2_connect(port) as s:
        s.sendall(frame(PING, 0, 0, b"12345678"))
        frames, _ = read_frames(s, until=lambda f: f[0] == PING and f[1] & ACK)
        return any(f[0] == PING and f[1] & ACK and f[3] == b"12345678" for f in frames)
