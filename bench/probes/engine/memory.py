"""Memory per idle connection and per idle stream of an engine's server process.

    python -m bench.probes.engine.memory [--engines native,grpcio[,ngh2]] [--conns 1000] [--streams 1000]

For each engine: start ``bench.probes.engine.server``, open one warm-up connection and make
a call, read the server's RSS; open ``--conns`` idle HTTP/2 connections (preface +
SETTINGS, nothing else), read RSS again; then on 10 of them open ``--streams`` idle
streams (HEADERS of a bidi call, no END_STREAM, no message) and read RSS once more.
Reports (delta RSS) / count. RSS is page-granular and the allocator keeps freed
memory, so read these as +-10% figures.
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import struct
import subprocess
import sys
import time

from .h2load_rounds import ROOT, free_port, wait_port

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def lit(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def headers_block(path):
    return b"".join(lit(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def settle(pid, seconds=1.0):
    time.sleep(seconds)
    return rss(pid)


def drain(socks):
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(65536):
                pass
        except (BlockingIOError, OSError):
            pass


def measure(engine, nconns, nstreams):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "bench.probes.engine.server", "--engine", engine,
                          "--port", str(port)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_port(port)
        warm = socket.create_connection(("127.0.0.1", port))
        warm.sendall(PREFACE + frame(4, 0, 0) + frame(1, 5, 1, headers_block(b"/bench.B/Fixed")))
        time.sleep(0.3)
        socks.append(warm)
        base = settle(p.pid)
        for _ in range(nconns):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(PREFACE + frame(4, 0, 0))
            socks.append(s)
        time.sleep(0.5)
        drain(socks)
        with_conns = settle(p.pid)
        per_stream_socks = socks[1:11]
        sid = {id(s): 1 for s in per_stream_socks}
        for i in range(nstreams):
            s = per_stream_socks[i % len(per_stream_socks)]
            s.setblocking(True)
            s.sendall(frame(1, 4, sid[id(s)], headers_block(b"/bench.B/Echo")))
            sid[id(s)] += 2
        time.sleep(0.5)
        drain(per_stream_socks)
        with_streams = settle(p.pid)
        return base, (with_conns - base) / nconns, (with_streams - with_conns) / nstreams
    finally:
        for s in socks:
            s.close()
        p.terminate()
        p.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="native,grpcio")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=1000)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.conns + 1024)), hard))
    print(f"{a.conns} idle connections, {a.streams} idle streams (on 10 connections)")
    for engine in a.engines.split(","):
        base, per_conn, per_stream = measure(engine, a.conns, a.streams)
        print(f"  {engine:8s} base RSS {base / 2**20:6.1f} MiB   per idle connection "
              f"{per_conn / 1024:6.1f} KiB   per idle stream {per_stream / 1024:6.2f} KiB",
              flush=True)


if __name__ == "__main__":
    main()
