"""kvcore/engine/py_front.py on its own (both modes: it is what pure-Python mode
serves HTTP with): a streaming answer waits while the peer does not read, then
delivers every chunk; HTTP/2 connections go to ``h2_passthrough`` with the bytes
read so far; stop() closes idle connections."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

from kvcore.engine.py_front import PREFACE, PyFront

from .support import HOST, ServerThread, wait_for

CHUNK = 64 * 1024
CHUNKS = 400          # 25 MiB: far more than the socket buffers hold


def _read_answer(sock: socket.socket) -> bytes:
    buf = b""
    sock.settimeout(30)
    while not buf.endswith(b"\r\n0\r\n\r\n"):
        data = sock.recv(1 << 20)
        if not data:
            break
        buf += data
    return buf


def test_a_stream_waits_while_the_peer_does_not_read():
    produced = []

    async def chunks():
        for i in range(CHUNKS):
            produced.append(i)
            yield b"%06d" % i + b"x" * (CHUNK - 6)

    async def handler(method, path, headers, body):
        return 200, [("content-type", "text/plain")], chunks()

    server = ServerThread(lambda: PyFront(handler)).start()
    try:
        s = socket.create_connection((HOST, server.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: len(produced) > 0)
        # The front stops pulling chunks once the transport's buffer is full.
        stalled_at = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            n = len(produced)
            time.sleep(0.3)
            if len(produced) == n:
                stalled_at = n
                break
        assert stalled_at is not None and stalled_at < CHUNKS // 4, stalled_at
        raw = _read_answer(s)
        s.close()
    finally:
        server.stop()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in head
    assert len(produced) == CHUNKS
    assert body.count(b"\r\n%x\r\n" % CHUNK) == CHUNKS - 1     # every chunk, in order
    assert b"%06d" % (CHUNKS - 1) in body


def test_http2_goes_to_the_passthrough_with_the_bytes_read():
    taken = []
    got = threading.Event()

    def passthrough(transport, first):
        taken.append(first)
        transport.write(b"spliced")
        transport.close()
        got.set()

    server = ServerThread(lambda: PyFront(None, h2_passthrough=passthrough)).start()
    try:
        s = socket.create_connection((HOST, server.port), timeout=10)
        s.sendall(PREFACE[:10])
        time.sleep(0.1)          # the preface in two pieces
        s.sendall(PREFACE[10:] + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert got.wait(10)
        assert s.recv(100) == b"spliced"
        s.close()
        # Without an HTTP handler, HTTP/1.x gets the native front's 404.
        s = socket.create_connection((HOST, server.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _read_until_close(s).startswith(b"HTTP/1.1 404 Not Found\r\n")
    finally:
        server.stop()
    assert taken[0].startswith(PREFACE)


def _read_until_close(s: socket.socket) -> bytes:
    buf = b""
    s.settimeout(2)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return buf
            buf += data
    except socket.timeout:
        return buf


def test_stop_closes_idle_connections_and_lets_an_answer_finish():
    release = None

    async def handler(method, path, headers, body):
        if path == "/slow":
            await release.wait()
        return 200, [], b"done"

    def make():
        nonlocal release
        release = asyncio.Event()
        return PyFront(handler)

    server = ServerThread(make).start()
    idle = socket.create_connection((HOST, server.port), timeout=10)
    busy = socket.create_connection((HOST, server.port), timeout=10)
    busy.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 20})
    try:
        assert wait_for(lambda: server.engine.stats()["connections"] == 2)
        stopper.start()
        idle.settimeout(10)
        assert idle.recv(10) == b""          # closed without an answer
        server.loop.call_soon_threadsafe(release.set)
        answer = _read_until_close(busy)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in answer and answer.endswith(b"done")
    finally:
        stopper.join(30)
        idle.close()
        busy.close()
