"""The WAL's fdatasync under a lone put: two kvcore trees and etcd 3.5.1, alternating,
each round's mean fdatasync from /metrics (etcd_disk_wal_fsync_duration_seconds
sum / count over the round: its buckets start at 1 ms, too coarse for these) next to
the put p50 and CPU per put of lone_put.py.

    python -m bench.probes.experiments.wal_fsync --a /work/main --b . [--rounds 5]
        [--total 3000] [--no-etcd] [--val-size 8]
"""
from __future__ import annotations

import argparse
import sys
import urllib.request

from bench.probes.experiments.lone_put import median, one_run, start
from bench.servers import ETCD351

METRIC = "etcd_disk_wal_fsync_duration_seconds"


def fsync_totals(port: int) -> tuple[float, float]:
    """(sum seconds, count) of the WAL fsync histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    s = n = 0.0
    for line in text.decode().splitlines():
        if line.startswith(METRIC + "_sum"):
            s = float(line.split()[-1])
        elif line.startswith(METRIC + "_count"):
            n = float(line.split()[-1])
    return s, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", default=".")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--total", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--val-size", type=int, default=8)
    a = ap.parse_args(argv)
    a.conns = a.clients = 1
    sides = [("A", a.a), ("B", a.b)] + ([] if a.no_etcd else [("etcd", None)])
    servers, runs = {}, {name: [] for name, _ in sides}
    try:
        for name, tree in sides:
            servers[name] = start(name, tree, a.workers)
        for i in range(a.rounds):
            for name, _ in sides[i % len(sides):] + sides[:i % len(sides)]:
                srv = servers[name]
                s0, n0 = fsync_totals(srv.port)
                r = one_run(srv, a)
                s1, n1 = fsync_totals(srv.port)
                r["fsync_us"] = (s1 - s0) / max(1.0, n1 - n0) * 1e6
                r["fsyncs"] = n1 - n0
                runs[name].append(r)
                print(f"round {i + 1} {name:4}: fsync mean {r['fsync_us']:.1f} us over "
                      f"{r['fsyncs']:.0f}  put p50 {r['p50']:.3f} ms  CPU/put core "
                      f"{r['core_us']:.1f} us", flush=True)
        for name, tree in sides:
            rs = runs[name]
            print(f"median {name:4} ({tree or ETCD351}): "
                  + "  ".join(f"{k} {median([r[k] for r in rs]):.3f}"
                              for k in ("fsync_us", "p50", "core_us")))
    finally:
        for s in servers.values():
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
