"""Slow-consumer scenario (Watch/Lease issue, acceptance 3): N writes go through
while one watcher never reads; compare write throughput and another watcher's event
latency with and without it.

    python -m bench.probes.watch_slow --writes 100000 [--server kvcore|ETCD_BIN]

The never-reading watcher is a grpcio stream whose iterator is never advanced, so its
HTTP/2 flow-control window closes; the server must neither buffer without bound nor
slow the others. Afterwards it is read to the end: it must catch up in order, or be
cancelled with a compact revision (etcd's behaviour for a watcher left too far behind).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from bench.servers import free_port
from kvcore.api import rpc_pb2, rpc_pb2_grpc


def start(server: str, base: str):
    c, p = free_port(), free_port()
    prefix = [sys.executable, "-m", "kvcore", "--workers", "2"] if server == "kvcore" else [server]
    argv = prefix + ["--data-dir", os.path.join(base, "d"),
                     "--listen-client-urls", f"http://127.0.0.1:{c}",
                     "--advertise-client-urls", f"http://127.0.0.1:{c}",
                     "--listen-peer-urls", f"http://127.0.0.1:{p}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                     "--initial-cluster", f"default=http://127.0.0.1:{p}"]
    proc = subprocess.Popen(argv, stdout=open(os.path.join(base, "log"), "w"),
                            stderr=subprocess.STDOUT)
    ep = f"127.0.0.1:{c}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(ep) as ch:
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"ready", value=b"1"), timeout=1)
            return proc, ep
        except grpc.RpcError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _requests(create, hold):
    yield rpc_pb2.WatchRequest(create_request=create)
    hold.wait(600)


def run(server: str, writes: int, slow: bool) -> dict:
    base = tempfile.mkdtemp(prefix="watchslow-")
    proc, ep = start(server, base)
    hold = threading.Event()
    create = rpc_pb2.WatchCreateRequest(key=b"k/", range_end=b"k0")
    acks: dict[int, float] = {}
    lat: list[float] = []
    try:
        if slow:
            slow_ch = grpc.insecure_channel(ep)
            slow_stream = rpc_pb2_grpc.WatchStub(slow_ch).Watch(_requests(create, hold))
            next(slow_stream)
        fast_ch = grpc.insecure_channel(ep)
        fast = rpc_pb2_grpc.WatchStub(fast_ch).Watch(_requests(create, hold))
        next(fast)
        got = [0]

        def reader():
            for resp in fast:
                now = time.monotonic()
                for e in resp.events:
                    t = acks.get(e.kv.mod_revision)
                    if t is not None:
                        lat.append(now - t)
                    got[0] += 1
                if got[0] >= writes:
                    return

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        value = b"v" * 256
        t0 = time.monotonic()

        def writer(w):
            with grpc.insecure_channel(ep) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                for i in range(w, writes, 16):
                    r = kv.Put(rpc_pb2.PutRequest(key=b"k/%07d" % i, value=value), timeout=30)
                    acks[r.header.revision] = time.monotonic()

        ws = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for w in ws:
            w.start()
        for w in ws:
            w.join()
        elapsed = time.monotonic() - t0
        rt.join(120)
        out = {"writes_per_s": writes / elapsed, "events": got[0],
               "latency_p50_ms": 1000 * statistics.median(lat) if lat else None,
               "latency_p99_ms": 1000 * sorted(lat)[int(len(lat) * 0.99)] if lat else None}
        if slow:
            revs, cancelled = [], None
            for resp in slow_stream:
                revs.extend(e.kv.mod_revision for e in resp.events)
                if resp.canceled:
                    cancelled = resp.compact_revision
                    break
                if len(revs) >= writes:
                    break
            ordered = revs == sorted(set(revs))
            out["slow_watcher"] = (f"caught up: {len(revs)} events in order" if ordered and
                                   len(revs) >= writes else
                                   f"cancelled at compact revision {cancelled}" if cancelled
                                   else f"{len(revs)} events, ordered={ordered}")
        return out
    finally:
        hold.set()
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=100000)
    ap.add_argument("--server", default="kvcore")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for r in range(args.rounds):
        for slow in (False, True):
            res = run(args.server, args.writes, slow)
            print(f"round {r + 1} {'with' if slow else 'without'} a never-reading watcher: {res}",
                  flush=True)


if __name__ == "__main__":
    main()
