"""The core process's CPU per put, two source trees compared (A/B alternating).

Starts a one-member kvcore from each tree in turn (PYTHONPATH=tree), warms it up, runs
``python -m bench put`` against it and reads the core's utime+stime from /proc before
and after: CPU per put of the process that limits write throughput, less sensitive to
a busy machine than requests per second.

    python -m bench.probes.experiments.core_cpu_per_put --a /work/main --b . [--rounds 5]
        [--workload txn-put --txn-ops 16] [--total 60000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from bench.servers import Server


def cpu_seconds(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tree: str, total: int, workers: int,
            workload: tuple = ("put",)) -> tuple[float, float]:
    """-> (core CPU microseconds per put, requests per second)."""
    env = {"PYTHONPATH": os.path.abspath(tree)}
    srv = Server("kvcore", [sys.executable, "-m", "kvcore"], "kvcore",
                 extra=["--workers", str(workers)], env=env).start()
    try:
        err = srv.wait_ready()
        if err:
            raise RuntimeError(err)
        put = [sys.executable, "-m", "bench", "--endpoints", f"127.0.0.1:{srv.port}",
               "--conns", "10", "--clients", "100", "--no-progress"]
        penv = dict(os.environ, **env)
        subprocess.run(put + ["--total", "2000", *workload], env=penv, capture_output=True,
                       timeout=120, check=True)
        c0 = cpu_seconds(srv.proc.pid)
        r = subprocess.run(put + ["--total", str(total), "--json", "-", *workload], env=penv,
                           capture_output=True, text=True, timeout=600, check=True)
        c1 = cpu_seconds(srv.proc.pid)
        return (c1 - c0) / total * 1e6, json.loads(r.stdout)["rps"]
    finally:
        srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True, help="source tree A (e.g. main's checkout)")
    ap.add_argument("--b", default=".", help="source tree B (default: this one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--total", type=int, default=60000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workload", choices=("put", "txn-put"), default="put")
    ap.add_argument("--txn-ops", type=int, default=16, help="puts per txn (txn-put)")
    a = ap.parse_args(argv)
    workload = (a.workload,) + (("--txn-ops", str(a.txn_ops), "--key-space-size",
                                  "100000") if a.workload == "txn-put" else ())
    runs: dict = {"A": [], "B": []}
    for _ in range(a.rounds):
        for name, tree in (("A", a.a), ("B", a.b)):
            us, rps = one_run(tree, a.total, a.workers, workload)
            runs[name].append(us)
            print(f"{name} {tree}: {us:.1f} us core CPU/{a.workload}, "
                  f"{rps:.0f} {a.workload}/s", flush=True)
    for name, tree in (("A", a.a), ("B", a.b)):
        xs = sorted(runs[name])
        print(f"{name} {tree}: median {xs[len(xs) // 2]:.1f} us/{a.workload} "
              f"(min {xs[0]:.1f}, max {xs[-1]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
