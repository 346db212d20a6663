"""Flow control for large requests: the native engine's initial stream window holds
the largest request message it accepts, so a client sends any acceptable request
whole on the windows of the first SETTINGS, without waiting for a WINDOW_UPDATE
mid-message (with the old 1 MiB window a 1 MiB put waited for one every time).
Raw HTTP/2 to 127.0.0.1; every read has a deadline."""
from __future__ import annotations

import struct

import pytest

from kvcore.engine.native import NativeEngine, request_window

from .support import (DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM, SETTINGS, GOAWAY,
                      WINDOW_UPDATE, Probe, ServerThread, frame, grpc_message,
                      grpc_request_block, h2_connect, make_methods, read_frames)

MAX_RECV = 2 * 1024 * 1024 + 512 * 1024   # the worker's: --max-request-bytes + 512 KiB
INITIAL_WINDOW_SIZE = 0x4


def test_request_window_bounds():
    assert request_window(4 << 20) == (4 << 20) + 5
    assert request_window(100) == 1 << 20
    assert request_window(2 ** 31 - 1) == 16 << 20


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(lambda: NativeEngine(make_methods(Probe()),
                                            max_receive_message_length=MAX_RECV)).start()
    yield srv
    srv.stop()


def settings_of(frames) -> dict:
    out = {}
    for ftype, flags, sid, payload in frames:
        if ftype == SETTINGS and not flags & 1:
            for i in range(0, len(payload), 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                out[k] = v
    return out


@pytest.mark.native_engine
def test_largest_request_sent_whole_on_the_first_windows(server):
    payload = bytes(range(256)) * (MAX_RECV // 256)          # exactly MAX_RECV bytes
    body = grpc_message(payload)
    with h2_connect(server.port) as s:
        # The server's SETTINGS and its connection WINDOW_UPDATE (16 MiB), then ours:
        # large windows for the answer. No frame of the server is read after this
        # until the whole request is out.
        first, _ = read_frames(s, until=lambda f: f[0] == WINDOW_UPDATE and f[2] == 0)
        window = settings_of(first).get(INITIAL_WINDOW_SIZE, 65535)
        assert window >= len(body), window
        s.sendall(frame(SETTINGS, 1, 0) + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 24))
                  + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 24) - 65535)))
        s.sendall(frame(HEADERS, END_HEADERS, 1, grpc_request_block(b"/test.T/Echo")))
        for i in range(0, len(body), 16384):
            chunk = body[i:i + 16384]
            s.sendall(frame(DATA, END_STREAM if i + 16384 >= len(body) else 0, 1, chunk))
        frames, _ = read_frames(s, until=lambda f: f[0] == HEADERS and f[2] == 1
                                and f[1] & END_STREAM, timeout=20)
    assert not [f for f in frames if f[0] in (RST_STREAM, GOAWAY)], frames
    data = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
    assert data == body
