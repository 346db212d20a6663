"""Liveness under a healed network, measured over simulator seeds.

For each seed the cluster runs the chaos phase (partitions, crashes, drops...), then the
network heals, crashed nodes restart, and we count ticks until (a) a leader is elected and
acknowledged by every member, and (b) a fresh proposal is applied by every member.  Also
measures a cold start (fresh cluster, perfect network).

    python -m tests.sim.liveness [--seeds 1000] [--start 0]

Prints min / median / p99 / max ticks (election timeout is 10 ticks, randomized in
[10, 20)).  A seed that does not converge within the bound fails the run.
"""
from __future__ import annotations

import argparse
import sys
import time

from .cluster import Cluster, Scenario, run_seed


def pct(xs: list, p: float) -> int:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(name: str, xs: list) -> str:
    return (f"{name:<34} n={len(xs):<6} min={min(xs):<4} median={pct(xs, 50):<4} "
            f"p99={pct(xs, 99):<4} max={max(xs)}")


def cold_start(seed: int) -> tuple[int, int]:
    sc = Scenario(seed)
    sc.drop = sc.dup = 0.0
    sc.crash_rate = sc.partition_rate = 0.0
    cl = Cluster(sc)
    return cl.converge(400)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()
    lead, commit, cold_lead, cold_commit = {}, {}, [], []
    fails = 0
    for seed in range(a.start, a.start + a.seeds):
        try:
            r = run_seed(seed)
        except AssertionError as e:
            fails += 1
            print(f"FAIL {e}", file=sys.stderr)
            continue
        lead.setdefault(r["n"], []).append(r["t_lead"])
        commit.setdefault(r["n"], []).append(r["t_commit"])
        cl, cc = cold_start(seed)
        cold_lead.append(cl)
        cold_commit.append(cc)
    print(f"liveness over seeds {a.start}..{a.start + a.seeds - 1} "
          f"({time.time() - t0:.0f}s, {fails} failures); unit: ticks "
          "(election timeout 10, heartbeat 1)")
    print(summary("cold start: leader elected", cold_lead))
    print(summary("cold start: first write applied", cold_commit))
    all_lead = [x for v in lead.values() for x in v]
    all_commit = [x for v in commit.values() for x in v]
    print(summary("after heal: leader elected", all_lead))
    print(summary("after heal: write applied by all", all_commit))
    for n in sorted(lead):
        print(summary(f"  {n} nodes: leader elected", lead[n]))
        print(summary(f"  {n} nodes: write applied by all", commit[n]))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
