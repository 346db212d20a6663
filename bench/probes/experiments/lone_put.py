"""A lone put (1 connection, 1 request in flight): two kvcore trees and etcd 3.5.1,
alternating, with latency and the CPU each put costs each server process.

On a shared machine requests per second swing with the neighbours; the p50 of a
lone put and the CPU per put (utime+stime from /proc, core and workers apart) are
steadier. Every server runs once per round, in rotating order; medians over rounds.

    python -m bench.probes.experiments.lone_put --a /work/main --b . [--rounds 5]
        [--total 3000] [--conns 1 --clients 1] [--no-etcd] [--val-size 8]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.servers import ETCD351, Server, etcd_server


def cpu_seconds(pid: int) -> float:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``: how often it went to
    sleep waiting for something (each hop between threads or processes is one)."""
    n = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        n += int(line.split()[1])
    except OSError:
        pass
    return n


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, timeout=5).stdout
    return [int(x) for x in out.split()]


def start(name: str, tree: str | None, workers: int) -> Server:
    if tree is None:
        srv = etcd_server(ETCD351, name)
    else:
        env = {"PYTHONPATH": os.path.abspath(tree)}
        srv = Server(name, [sys.executable, "-m", "kvcore"], "kvcore",
                     extra=["--workers", str(workers)], env=env)
    srv.start()
    err = srv.wait_ready()
    if err:
        srv.stop()
        raise RuntimeError(f"{name}: {err}")
    return srv


def one_run(srv: Server, a) -> dict:
    put = [sys.executable, "-m", "bench", "--endpoints", f"127.0.0.1:{srv.port}",
           "--conns", str(a.conns), "--clients", str(a.clients), "--no-progress",
           "--max-seconds", "60"]
    put_args = ["put", "--val-size", str(a.val_size)]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))))
    subprocess.run(put + ["--total", "300"] + put_args, env=env, capture_output=True,
                   timeout=120, check=True)
    core = srv.proc.pid
    kids = children(core)
    c0, w0 = cpu_seconds(core), sum(cpu_seconds(p) for p in kids)
    s0 = wakeups(core) + sum(wakeups(p) for p in kids)
    r = subprocess.run(put + ["--total", str(a.total), "--json", "-"] + put_args, env=env,
                       capture_output=True, text=True, timeout=180, check=True)
    c1, w1 = cpu_seconds(core), sum(cpu_seconds(p) for p in kids)
    s1 = wakeups(core) + sum(wakeups(p) for p in kids)
    d = json.loads(r.stdout)
    n = d["ok"] or 1
    return {"p50": d["latency"]["p50_ms"], "p99": d["latency"]["p99_ms"], "rps": d["rps"],
            "core_us": (c1 - c0) / n * 1e6, "workers_us": (w1 - w0) / n * 1e6, "sleeps": (s1 - s0) / n}


def median(xs: list) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True, help="kvcore source tree A (e.g. main's checkout)")
    ap.add_argument("--b", default=".", help="kvcore source tree B (default: this one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--total", type=int, default=3000)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--val-size", type=int, default=8, help="value bytes (bench's default 8)")
    a = ap.parse_args(argv)
    sides = [("A", a.a), ("B", a.b)] + ([] if a.no_etcd else [("etcd", None)])
    servers = {}
    try:
        for name, tree in sides:
            servers[name] = start(name, tree, a.workers)
        runs: dict = {name: [] for name, _ in sides}
        for i in range(a.rounds):
            order = sides[i % len(sides):] + sides[:i % len(sides)]
            for name, _ in order:
                r = one_run(servers[name], a)
                runs[name].append(r)
                print(f"round {i + 1} {name:4}: p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  "
                      f"{r['rps']:.0f} put/s  CPU/put core {r['core_us']:.1f} us  "
                      f"workers {r['workers_us']:.1f} us  sleeps/put {r['sleeps']:.2f}", flush=True)
        for name, tree in sides:
            rs = runs[name]
            print(f"median {name:4} ({tree or ETCD351}): "
                  + "  ".join(f"{k} {median([r[k] for r in rs]):.3f}"
                              for k in ("p50", "p99", "rps", "core_us", "workers_us", "sleeps")))
        if not a.no_etcd:
            for name in ("A", "B"):
                ratios = [e["p50"] / k["p50"] for k, e in zip(runs[name], runs["etcd"])]
                print(f"{name}: etcd p50 / kvcore p50 per round: "
                      + " ".join(f"{x:.2f}" for x in ratios) + f"  median {median(ratios):.2f}")
    finally:
        for s in servers.values():
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
