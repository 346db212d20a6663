"""--max-concurrent-streams: the member advertises the limit in its HTTP/2 SETTINGS;
a client that opens a stream beyond it is sent away (libnghttp2 answers GOAWAY
PROTOCOL_ERROR naming the last stream it took; grpc-go would RST_STREAM the extra
one: well-behaved clients, which keep to the advertised limit, see neither)."""
import struct

import pytest

from tests import servers
from tests.integration.engine.support import (ACK, END_HEADERS, GOAWAY, HEADERS,
                                              SETTINGS, frame, grpc_request_block,
                                              h2_connect, read_frames, server_alive)

# libnghttp2's SETTINGS and GOAWAY are the native engine's (grpcio answers otherwise)
pytestmark = pytest.mark.native_engine

MAX_CONCURRENT_STREAMS = 0x3


def _settings(frames) -> dict:
    for ftype, flags, _sid, payload in frames:
        if ftype == SETTINGS and not flags & ACK:
            return {struct.unpack(">H", payload[i:i + 2])[0]:
                    struct.unpack(">I", payload[i + 2:i + 6])[0]
                    for i in range(0, len(payload), 6)}
    return {}


@pytest.mark.parametrize("flag,limit", [(("--max-concurrent-streams", "2"), 2), ((), 1000)])
def test_stream_limit_is_advertised_and_enforced(tmp_path, flag, limit):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=flag)
    try:
        with h2_connect(kv.port) as s:
            frames, _ = read_frames(s, until=lambda f: f[0] == SETTINGS and not f[1] & ACK)
            assert _settings(frames).get(MAX_CONCURRENT_STREAMS) == limit
            s.sendall(frame(SETTINGS, ACK, 0))
            if limit > 10:
                return
            # Open limit + 1 Watch streams (they stay open without END_STREAM).
            for i in range(limit + 1):
                s.sendall(frame(HEADERS, END_HEADERS, 1 + 2 * i,
                                grpc_request_block(b"/etcdserverpb.Watch/Watch")))
            frames, _ = read_frames(s, until=lambda f: f[0] == GOAWAY)
            goaway = [f[3] for f in frames if f[0] == GOAWAY]
            assert goaway, frames
            last, code = struct.unpack(">II", goaway[0][:8])
            assert (last, code) == (2 * limit - 1, 0x1), goaway   # streams 1..limit taken
            assert b"max concurrent streams exceeded" in goaway[0]
        assert server_alive(kv.port)
    finally:
        kv.stop()
