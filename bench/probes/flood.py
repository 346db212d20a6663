"""Connection floods against one member, kvcore next to etcd 3.5.1: another client's
p99 latency and the member's RSS at each step (reported, not judged).

    nice -n 10 python -m bench.probes.flood [--conns 3000] [--resets 200000] [--writes 2000]
        [--servers kvcore,/opt/etcd351/bin/etcd]

Steps, cumulative (each keeps what the previous opened):
  base      nothing else going on
  idle      --conns HTTP/2 connections that sent the preface and SETTINGS, then nothing
  slow      + a Watch on "w" whose client announced a zero stream window and never
            reads, while --writes puts of 4 KiB go to "w" (they pile up behind it)
  reset     + a rapid-reset flood: --resets streams opened and cancelled at once
            (HEADERS + RST_STREAM) on one connection, while the latency is measured
The other client issues --samples sequential Range calls over its own connection at
each step. RSS is the member's processes (kvcore: core + workers).
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
import sys
import threading
import time

import grpc

from kvcore.h2client import framing as h2
from bench.servers import etcd_server, kvcore_server, rss_kib
from kvcore.api import rpc_pb2, rpc_pb2_grpc

CANCEL = 0x8




def latency_ms(stub, n: int) -> dict:
    lat = []
    errors = 0
    for _ in range(n):
        t = time.perf_counter()
        try:
            stub.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=30)
        except grpc.RpcError:
            errors += 1
        lat.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(lat, n=100)
    return {"p50": round(q[49], 2), "p99": round(q[98], 2), "max": round(max(lat), 2),
            "errors": errors}


def _headers(sid: int, path: str) -> bytes:
    return h2.frame(1, h2.FLAG_END_HEADERS, sid, h2.request_header_block(path, "localhost"))


def reset_flood(port: int, resets: int, sent: list) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), 10)
        s.sendall(h2.PREFACE + h2.settings_frame())
    except OSError:
        return
    batch = b""
    with s:
        for i in range(resets):
            sid = 1 + 2 * i
            batch += _headers(sid, "/etcdserverpb.KV/Range") + \
                h2.frame(3, 0, sid, struct.pack(">I", CANCEL))
            if len(batch) > 32768 or i == resets - 1:
                try:
                    s.sendall(batch)
                except OSError:
                    sent.append(("refused after", i))   # GOAWAY: a fine answer
                    return
                batch = b""
        sent.append(("sent", resets))


def run(server, args) -> dict:
    server.start()
    why = server.wait_ready(60)
    if why:
        server.stop()
        raise RuntimeError(f"{server.name}: {why}")
    socks = []
    out = {"server": server.name}
    try:
        pids = server.pids()
        port = server.port
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = rpc_pb2_grpc.KVStub(ch)
        stub.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=30)
        out["base"] = dict(latency_ms(stub, args.samples), rss_kib=rss_kib(pids))
        refused = 0
        for _ in range(args.conns):
            try:
                s = socket.create_connection(("127.0.0.1", port), 10)
                s.sendall(h2.PREFACE + h2.settings_frame())
                socks.append(s)
            except OSError:
                refused += 1
        time.sleep(1)   # let the server take them all in
        out["idle"] = dict(latency_ms(stub, args.samples), rss_kib=rss_kib(pids),
                           conns=len(socks), refused=refused)
        slow = socket.create_connection(("127.0.0.1", port), 10)
        slow.sendall(h2.PREFACE + h2.settings_frame({h2.SETTINGS_INITIAL_WINDOW_SIZE: 0}))
        watch = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w"))
        slow.sendall(_headers(1, "/etcdserverpb.Watch/Watch") +
                     h2.frame(0, 0, 1, h2.grpc_message(watch.SerializeToString())))
        socks.append(slow)
        t0 = time.perf_counter()
        for _ in range(args.writes):
            stub.Put(rpc_pb2.PutRequest(key=b"w", value=b"x" * 4096), timeout=30)
        put_s = time.perf_counter() - t0
        out["slow"] = dict(latency_ms(stub, args.samples), rss_kib=rss_kib(pids),
                           writes_per_s=round(args.writes / put_s))
        sent: list = []
        flooder = threading.Thread(target=reset_flood, args=(port, args.resets, sent))
        flooder.start()
        during = latency_ms(stub, args.samples)
        flooder.join(120)
        out["reset"] = dict(during, rss_kib=rss_kib(pids), flood=sent[0] if sent else None)
        ch.close()
        out["intact"] = server.proc.poll() is None and sorted(server.pids()) == sorted(pids)
    finally:
        for s in socks:
            s.close()
    time.sleep(2)
    out["after_close_rss_kib"] = rss_kib(server.pids())
    server.stop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--resets", type=int, default=200000)
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--servers", default="kvcore,/opt/etcd351/bin/etcd")
    ap.add_argument("--kvcore-cmd", default=f"{sys.executable} -m kvcore")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    results = []
    for name in args.servers.split(","):
        srv = kvcore_server(args.kvcore_cmd, workers=1) if name == "kvcore" \
            else etcd_server(name)
        results.append(run(srv, args))
    print(f"flood: {args.conns} idle conns, slow watcher + {args.writes} x 4 KiB puts, "
          f"{args.resets} resets; other client's Range latency (ms), member RSS (KiB)")
    print("| server | step | p50 | p99 | max | errors | RSS KiB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        for step in ("base", "idle", "slow", "reset"):
            s = r[step]
            print(f"| {r['server']} | {step} | {s['p50']} | {s['p99']} | {s['max']} | "
                  f"{s['errors']} | {s['rss_kib']} |")
        print(f"| {r['server']} | after close | | | | | {r['after_close_rss_kib']} |")
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["intact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
