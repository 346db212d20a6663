"""Measurement behind the choice of HTTP/2 client (see bench/README.md).

Drives the same closed loop as bench.client (N connections × M unary calls in flight,
fixed body) with PyPI's ngh2 (libnghttp2, client role) on uvloop, and reports calls/s
and this process's CPU per call. Not part of the tool; needs `pip install ngh2==0.3.0`.

    python -m bench.probes.experiments.ngh2_client_probe PORT [TOTAL] [CONNS] [INFLIGHT]
"""
import asyncio
import resource
import sys
import time

import ngh2
import uvloop

from kvcore.h2client import framing as h2


class P(asyncio.Protocol):
    def __init__(self, st, headers, body, inflight):
        self.st, self.headers, self.body, self.inflight = st, headers, body, inflight
        self.c = ngh2.Connection(ngh2.Role.CLIENT)
        self.c.initiate_connection({ngh2.Setting.INITIAL_WINDOW_SIZE: 2**31 - 1}
                                   if hasattr(ngh2, "Setting") else None)

    def connection_made(self, t):
        self.t = t
        t.write(self.c.data_to_send())

    def start(self):
        for _ in range(self.inflight):
            self.issue()
        self.t.write(self.c.data_to_send())

    def issue(self):
        if self.st["left"] <= 0:
            return
        self.st["left"] -= 1
        sid = self.c.send_request(self.headers)
        self.c.send_data(sid, self.body, end_stream=True)

    def data_received(self, data):
        self.c.receive_data(data)
        for ev in self.c.events():
            if isinstance(ev, ngh2.TrailersReceived):
                self.st["ok"] += 1
                self.issue()
        out = self.c.data_to_send()
        if out:
            self.t.write(out)
        if self.st["ok"] >= self.st["total"] and not self.st["done"].done():
            self.st["done"].set_result(None)


async def main(port, total, conns, inflight):
    loop = asyncio.get_running_loop()
    st = {"left": total, "ok": 0, "total": total, "done": loop.create_future()}
    headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Range"),
               (b":authority", f"127.0.0.1:{port}".encode()), (b"content-type", b"application/grpc"),
               (b"te", b"trailers")]
    body = h2.grpc_message(b"\x0a\x03foo\x88\x01\x01")
    ps = []
    for _ in range(conns):
        _, p = await loop.create_connection(lambda: P(st, headers, body, inflight), "127.0.0.1", port)
        ps.append(p)
    await asyncio.sleep(0.2)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for p in ps:
        p.start()
    await asyncio.wait_for(st["done"], 30)
    el = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    print(f"ngh2 client: {st['ok']} calls in {el:.2f}s = {st['ok'] / el:,.0f}/s, "
          f"CPU {cpu:.2f}s = {100 * cpu / el:.0f}% of a core, {1e6 * cpu / st['ok']:.1f} µs/call")


if __name__ == "__main__":
    port = int(sys.argv[1])
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    inflight = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    uvloop.run(main(port, total, conns, inflight))
