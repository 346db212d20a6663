"""--grpc-keepalive-interval/-timeout and --grpc-keepalive-min-time, seen by a raw
HTTP/2 client against kvcore and etcd 3.5.1 started with the same flags: the server
pings an idle connection and closes it when the ping goes unanswered; a client
pinging more often than the minimum time is sent away (GOAWAY ENHANCE_YOUR_CALM)."""
from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 4, 6, 7
ENHANCE_YOUR_CALM = 0xB


def _frame(ftype: int, flags: int, payload: bytes = b"", stream: int = 0) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


class Conn:
    """A client that acknowledges SETTINGS and nothing else."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.sendall(PREFACE + _frame(SETTINGS, 0))
        self.buf = b""

    def next_frame(self, deadline: float):
        """-> (type, flags, payload), or None once the server closed the connection."""
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    ftype, flags = self.buf[3], self.buf[4]
                    payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                    if ftype == SETTINGS and not flags & 1:
                        self.s.sendall(_frame(SETTINGS, 1))
                    return ftype, flags, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def close(self):
        self.s.close()


def _start(kind: str, base, flags: tuple):
    if kind == "kvcore":
        return servers.start_kvcore(str(base / "kv.etcd"), workers=1, extra=flags)
    return servers.start_etcd(str(base / "etcd.etcd"), binary=ETCD351, extra=flags)


def _idle_connection(port: int, wait: float = 8.0) -> tuple[bool, bool]:
    """-> (the server pinged, the server closed) within ``wait`` s of silence."""
    c = Conn(port)
    pinged = False
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                f = c.next_frame(deadline)
            except TimeoutError:
                return pinged, False
            if f is None:
                return pinged, True
            if f[0] == PING and not f[1] & 1:
                pinged = True
    finally:
        c.close()


def _eager_pinger(port: int) -> tuple[bool, int]:
    """Pings every 100 ms -> (GOAWAY received, its error code)."""
    c = Conn(port)
    try:
        deadline = time.monotonic() + 8
        c.s.setblocking(True)
        while time.monotonic() < deadline:
            c.s.sendall(_frame(PING, 0, b"12345678"))
            try:
                while True:
                    f = c.next_frame(time.monotonic() + 0.1)
                    if f is None:
                        return False, -1
                    if f[0] == GOAWAY:
                        return True, int.from_bytes(f[2][4:8], "big")
            except TimeoutError:
                pass
        return False, -1
    except (BrokenPipeError, ConnectionResetError):
        return False, -1
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["etcd", "kvcore"])
def test_server_keepalive_pings_and_closes_a_silent_connection(tmp_path, kind):
    srv = _start(kind, tmp_path, ("--grpc-keepalive-interval=1s",
                                  "--grpc-keepalive-timeout=1s"))
    try:
        assert _idle_connection(srv.port) == (True, True)
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["etcd", "kvcore"])
def test_default_keepalive_leaves_an_idle_connection_alone(tmp_path, kind):
    srv = _start(kind, tmp_path, ())
    try:
        assert _idle_connection(srv.port, wait=4.0) == (False, False)
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["etcd", "kvcore"])
def test_pings_faster_than_min_time_get_goaway_enhance_your_calm(tmp_path, kind):
    srv = _start(kind, tmp_path, ("--grpc-keepalive-min-time=10s",))
    try:
        assert _eager_pinger(srv.port) == (True, ENHANCE_YOUR_CALM)
    finally:
        srv.stop()
