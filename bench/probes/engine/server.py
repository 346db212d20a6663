"""A trivial gRPC server for engine benchmarks: one unary method returning fixed bytes.

    python -m bench.probes.engine.server --engine native|grpcio|ngh2 --port 50051 [--size 100]

The handler answers ``/bench.B/Fixed`` with ``--size`` bytes (the message, without the
5-byte gRPC prefix). ``ngh2`` is a ~40-line server on PyPI's ngh2 binding (sans-I/O
events in Python), kept only to compare the two ways of reaching libnghttp2.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from kvcore.engine.base import MethodTable  # noqa: E402

PATH = "/bench.B/Fixed"


def make_methods(size: int) -> MethodTable:
    body = b"v" * size

    async def fixed(request: bytes, ctx) -> bytes:
        return body

    async def echo_stream(requests, send, ctx):
        async for r in requests:
            await send(r)

    return MethodTable(unary={PATH: fixed}, stream={"/bench.B/Echo": echo_stream})


async def run_ngh2(port: int, size: int) -> None:
    import ngh2

    body = b"v" * size
    frame = b"\x00" + len(body).to_bytes(4, "big") + body
    resp = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    trailers = [(b"grpc-status", b"0")]

    class P(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.c = ngh2.Connection(ngh2.Role.SERVER)
            self.c.initiate_connection()
            t.write(self.c.data_to_send())

        def data_received(self, data):
            c = self.c
            try:
                c.receive_data(data)
            except ngh2.NGH2Error:
                self.t.close()
                return
            for ev in c.events():
                if isinstance(ev, (ngh2.RequestReceived, ngh2.DataReceived)) and ev.end_stream:
                    c.send_response(ev.stream_id, resp)
                    c.send_data(ev.stream_id, frame)
                    c.send_trailers(ev.stream_id, trailers)
            out = c.data_to_send()
            if out:
                self.t.write(out)

    loop = asyncio.get_running_loop()
    srv = await loop.create_server(P, "127.0.0.1", port, backlog=1024)
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    srv.close()


async def run_engine(kind: str, port: int, size: int) -> None:
    methods = make_methods(size)
    if kind == "native":
        from kvcore.engine.native import NativeEngine
        engine = NativeEngine(methods)
    else:
        from kvcore.engine.grpcio_engine import GrpcioEngine
        engine = GrpcioEngine(methods)
    bound = await engine.start("127.0.0.1", port)
    print(f"listening {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await engine.stop(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["native", "grpcio", "ngh2"], default="native")
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--size", type=int, default=100)
    a = ap.parse_args()
    if a.engine == "ngh2":
        uvloop.run(run_ngh2(a.port, a.size))
    else:
        uvloop.run(run_engine(a.engine, a.port, a.size))


if __name__ == "__main__":
    main()
