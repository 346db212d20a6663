"""CPU per unary call of bench.client's hot path, with no server and no sockets.

A fake transport answers every request written to it with a canned response (the
trivial server's frames), `batch` requests per read, so only the client's own work is
timed. Used to check optimisations of bench/client.py independently of machine noise.

    python -m bench.probes.experiments.client_microbench [CALLS] [INFLIGHT]
"""
import asyncio
import struct
import sys
import time

from bench import client, trivial_server
from kvcore.h2client import framing as h2

_U32 = struct.Struct(">I")


class FakeTransport:
    def __init__(self):
        self.sids = []

    def write(self, data):
        # collect the stream ids of the HEADERS frames written
        pos, n = 0, len(data)
        while pos + 9 <= n:
            length = int.from_bytes(data[pos:pos + 3], "big")
            if data[pos + 3] == h2.HEADERS:
                self.sids.append(_U32.unpack_from(data, pos + 5)[0] & 0x7FFFFFFF)
            pos += 9 + length

    def get_extra_info(self, name, default=None):
        return default

    def is_closing(self):
        return False

    def close(self):
        pass


def main(calls=300_000, inflight=100):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    hp, hb, dp, dd, tp, tb = trivial_server.fixed_response_parts(trivial_server.default_message(32))
    load = client.Load([h2.grpc_message(b"\x0a\x03foo")], calls, time.monotonic_ns() + int(60e9))
    load.done = loop.create_future()
    conn = client.Conn("x:1", load, h2.request_header_block("/p", "x:1"), loop)
    tr = FakeTransport()
    conn.transport = tr
    conn.data_received(h2.settings_frame({}))
    now = time.monotonic_ns()
    for _ in range(inflight):
        conn.issue(now)
    conn.flush()
    t0 = time.process_time()
    while load.ok < calls:
        sids, tr.sids = tr.sids, []
        if not sids:
            break
        out = []
        for sid in sids:
            sb = _U32.pack(sid)
            out += (hp, sb, hb, dp, sb, dd, tp, sb, tb)
        out.append(h2.window_update(0, len(sids) * 64))
        conn.data_received(b"".join(out))
    cpu = time.process_time() - t0
    # the fake's own share: same loop without the client
    t1 = time.process_time()
    for _ in range(calls // inflight):
        FakeTransport().write(b"".join([conn.hpre, b"\0\0\0\1", conn.hblock] * inflight))
        b"".join([x for sid in range(inflight) for x in (hp, _U32.pack(sid), hb, dp, _U32.pack(sid), dd, tp, _U32.pack(sid), tb)])
    fake = time.process_time() - t1
    cpu -= fake
    print(f"{load.ok} calls, {1e6 * cpu / max(1, load.ok):.2f} µs CPU per call (client only)")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))
