"""Leader failover time: kill -9 the leader of a 3-member cluster under write load and
measure the time from the kill to the first acknowledged put issued after it.

    python -m bench.failover --rounds 5 [--etcd-bin /opt/etcd351/bin/etcd] [--etcd-bin /usr/bin/etcd]

kvcore and each etcd run with the same flags (etcd's defaults: heartbeat 100 ms,
election timeout 1000 ms) on fresh data directories, alternating round by round.
Also checks that no acknowledged write was lost (read back from the survivors).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from bench.servers import default_etcd_bins, free_port
from kvcore.api import rpc_pb2, rpc_pb2_grpc


def start(kind: str, binary: str, base: str, extra: list) -> list:
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    procs = []
    for i, (c, p) in enumerate(ports):
        prefix = [sys.executable, "-m", "kvcore"] if kind == "kvcore" else [binary]
        argv = prefix + ["--name", f"m{i}", "--data-dir", os.path.join(base, f"m{i}"),
                         "--listen-client-urls", f"http://127.0.0.1:{c}",
                         "--advertise-client-urls", f"http://127.0.0.1:{c}",
                         "--listen-peer-urls", f"http://127.0.0.1:{p}",
                         "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                         "--initial-cluster", cluster] + extra
        log = open(os.path.join(base, f"m{i}.log"), "w")
        procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), f"127.0.0.1:{c}"))
    return procs


def leader(procs, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, ep in procs:
            if proc.poll() is not None:
                continue
            try:
                with grpc.insecure_channel(ep) as ch:
                    st = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=1)
                if st.leader and st.leader == st.header.member_id:
                    return proc, ep
            except grpc.RpcError:
                pass
        time.sleep(0.05)
    raise TimeoutError("no leader")


def one_round(kind: str, binary: str, extra: list) -> dict:
    base = tempfile.mkdtemp(prefix=f"failover-{kind}-")
    procs = start(kind, binary, base, extra)
    acked, lock, stop = {}, threading.Lock(), threading.Event()
    kill_at = [None]
    first_after = [None]

    def writer(t):
        eps = [ep for _, ep in procs]
        chans = [grpc.insecure_channel(ep) for ep in eps]
        stubs = [rpc_pb2_grpc.KVStub(c) for c in chans]
        i, j = 0, t
        while not stop.is_set():
            key = f"w{t}/{i:07d}".encode()
            issued = time.monotonic()
            try:
                r = stubs[j % 3].Put(rpc_pb2.PutRequest(key=key, value=b"x"), timeout=1)
                done = time.monotonic()
                with lock:
                    acked[key] = r.header.revision
                    if kill_at[0] is not None and issued > kill_at[0] and first_after[0] is None:
                        first_after[0] = done
                i += 1
            except grpc.RpcError:
                j += 1
                time.sleep(0.01)
        for c in chans:
            c.close()

    try:
        lproc, lep = leader(procs)
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        time.sleep(2.0)
        lproc, lep = leader(procs)
        kill_at[0] = time.monotonic()
        os.kill(lproc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while first_after[0] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        stop.set()
        for th in threads:
            th.join(10)
        survivors = [ep for p, ep in procs if p is not lproc]
        with grpc.insecure_channel(survivors[0]) as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"w", range_end=b"x"),
                                               timeout=30)
        have = {kv.key for kv in r.kvs}
        lost = sum(1 for k in acked if k not in have)
        return {"failover_s": (first_after[0] - kill_at[0]) if first_after[0] else None,
                "acked": len(acked), "lost": lost}
    finally:
        stop.set()
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--etcd-bin", action="append")
    ap.add_argument("--json")
    args = ap.parse_args()
    bins = args.etcd_bin or default_etcd_bins()
    sides = [("kvcore", "kvcore", ["--workers", "1"])] + [(b, b, []) for b in bins]
    results = {name: [] for name, _, _ in sides}
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for name, binary, extra in order:
            kind = "kvcore" if name == "kvcore" else "etcd"
            res = one_round(kind, binary, extra)
            results[name].append(res)
            print(f"round {r + 1} {name}: {res}", flush=True)
    print("\n| server | failover median (s) | rounds (s) | acknowledged writes lost |")
    print("|---|---:|---|---:|")
    for name, rs in results.items():
        times = [x["failover_s"] for x in rs if x["failover_s"] is not None]
        med = statistics.median(times) if times else float("nan")
        print(f"| {name} | {med:.3f} | {', '.join(f'{t:.3f}' for t in times)} | "
              f"{sum(x['lost'] for x in rs)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
