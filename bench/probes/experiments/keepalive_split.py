"""Where a keep-alive's server cost goes, by process, and the unary paths beside it.

    python -m bench.probes.experiments.keepalive_split cpu   [--tree NAME=DIR]...
    python -m bench.probes.experiments.keepalive_split calls [--tree NAME=DIR]...
    python -m bench.probes.experiments.keepalive_split unary [--tree NAME=DIR]... [--rounds 5]

``cpu``: one `bulk keepalive` run (10 conns x 100 clients, 200,000 keep-alives) per
tree, the CPU of the core and of each worker per keep-alive (/proc), the rate and the
load client's CPU. ``calls``: the same load (50,000) under `strace -c -f` of each
server process: read/write/epoll calls per keep-alive. ``unary``: put and serializable
range, 10 conns x 100 clients, 20,000 each, trees alternating, server CPU per op.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time

from bench.probes import bulk

KEEPALIVE = ["--conns", "10", "--clients", "100", "--total", "200000", "lease-keepalive"]
UNARY = {"put": ["--conns", "10", "--clients", "100", "--total", "20000", "put"],
         "range": ["--conns", "10", "--clients", "100", "--total", "20000", "range", "foo",
                   "--consistency", "s"]}
CALLS = ("read", "write", "writev", "epoll_pwait")


def _serve(name: str, tree: str):
    s = bulk.kvcore(name, tree)
    s.start()
    why = s.wait_ready(60)
    if why:
        s.stop()
        raise RuntimeError(why)
    return s


def _label(i: int) -> str:
    return "core" if i == 0 else f"worker{i}"


def cpu(name: str, tree: str) -> None:
    s = _serve(name, tree)
    try:
        pids = s.pids()
        before = [bulk.cpu_ticks([p]) for p in pids]
        res = bulk.bench_run(s, KEEPALIVE)
        n, hz = res["ok"], os.sysconf("SC_CLK_TCK")
        split = {_label(i): round(1e6 * (bulk.cpu_ticks([p]) - before[i]) / hz / n, 2)
                 for i, p in enumerate(pids)}
        print(f"{name}: {res['rps']:,.0f}/s, us per keep-alive {split}, client "
              f"{(res.get('generator') or {}).get('cpu_us_per_request')}")
    finally:
        s.stop()


def calls(name: str, tree: str) -> None:
    s = _serve(name, tree)
    tracers = []
    try:
        out = tempfile.mkdtemp(prefix="ka-strace-")
        for i, p in enumerate(s.pids()):
            path = os.path.join(out, _label(i))
            tracers.append((path, subprocess.Popen(
                ["strace", "-c", "-f", "-o", path, "-p", str(p)],
                stderr=subprocess.DEVNULL)))
        time.sleep(1)
        n = bulk.bench_run(s, KEEPALIVE[:5] + ["50000", "lease-keepalive"])["ok"]
        for _, t in tracers:
            t.send_signal(signal.SIGINT)
        for path, t in tracers:
            t.wait(10)
            counts = {}
            with open(path) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) >= 5 and fields[-1] in CALLS:
                        counts[fields[-1]] = round(int(fields[3]) / n, 3)
            print(f"{name} {os.path.basename(path)}: calls per keep-alive {counts}")
    finally:
        s.stop()


def unary(trees: dict, rounds: int) -> None:
    res = {(t, k): [] for t in trees for k in UNARY}
    for rnd in range(rounds):
        for name in (list(trees) if rnd % 2 == 0 else list(reversed(trees))):
            s = _serve(name, trees[name])
            try:
                for k, argv in UNARY.items():
                    pids = s.pids()
                    c0 = bulk.cpu_ticks(pids)
                    r = bulk.bench_run(s, argv)
                    used = (bulk.cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK")
                    res[(name, k)].append((round(r["rps"]), round(1e6 * used / r["ok"], 1)))
                    print(rnd + 1, name, k, res[(name, k)][-1], flush=True)
            finally:
                s.stop()
    for (t, k), v in res.items():
        print(f"{t:8s} {k:6s} rate median {statistics.median(x[0] for x in v):>8.0f} "
              f"{[x[0] for x in v]}  server CPU/op median "
              f"{statistics.median(x[1] for x in v)} us {[x[1] for x in v]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("cpu", "calls", "unary"))
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    trees = {n: os.path.abspath(d) for n, d in (t.split("=", 1) for t in a.tree)} \
        or {"kvcore": bulk.HERE}
    if a.what == "unary":
        unary(trees, a.rounds)
        return
    for name, tree in trees.items():
        (cpu if a.what == "cpu" else calls)(name, tree)


if __name__ == "__main__":
    main()
