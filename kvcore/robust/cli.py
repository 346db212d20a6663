"""kvcore-robust: fault rounds against any etcd-compatible binary, with history checks.

    kvcore-robust --binary kvcore --members 3 --rounds 20 --seed 1
    kvcore-robust --binary /opt/etcd351/bin/etcd --members 3 --rounds 20 --seed 1

Prints one line per round and a summary; writes report.json (and, for every round that
did not pass, its whole history) into --out. Exit status: 0 all rounds ok, 1 a
violation was found, 3 only unknown verdicts besides ok, 2 the cluster could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict

from kvcore import failpoints
from kvcore.robust.cluster import Cluster
from kvcore.robust.faults import KINDS, KVCORE_ONLY, SLOW_DEFRAG
from kvcore.robust.rounds import RoundPlan, run_round
from kvcore.robust.selftest import BUGS


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="kvcore-robust", description=__doc__.split("\n")[0])
    p.add_argument("--binary", default="kvcore",
                   help="'kvcore' or the path of an etcd-compatible server binary")
    p.add_argument("--members", type=int, default=3, choices=(1, 3, 5))
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", default="all",
                   help=f"comma-separated subset of: {', '.join(KINDS)} (default all)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--watchers", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="kvcore worker processes per member")
    p.add_argument("--heartbeat-interval", type=int, default=50)
    p.add_argument("--election-timeout", type=int, default=500)
    p.add_argument("--inject-bug", default="",
                   help="self-test: plant one of " + ", ".join(BUGS) + " (comma-separated: "
                        "round i plants the i-th, cycling) in each round's records, to show "
                        "the checkers catch it")
    p.add_argument("--out", default="", help="report folder (default: a new temp dir)")
    p.add_argument("--data-dir", default="", help="where members keep data (default: --out)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    kinds = list(KINDS) if a.faults == "all" else [k.strip() for k in a.faults.split(",")]
    unknown = [k for k in kinds if k not in KINDS]
    if a.binary != "kvcore":       # failpoints are kvcore's; etcd's release has none
        if a.faults != "all" and set(kinds) & set(KVCORE_ONLY):
            print(f"kvcore-robust: {', '.join(KVCORE_ONLY)} need --binary kvcore",
                  file=sys.stderr)
            return 2
        kinds = [k for k in kinds if k not in KVCORE_ONLY]
    bugs = [b for b in a.inject_bug.split(",") if b]
    unknown += [b for b in bugs if b not in BUGS]
    if unknown:
        print(f"kvcore-robust: unknown fault kind(s) or bug(s): {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    if a.binary != "kvcore" and not os.access(a.binary, os.X_OK):
        print(f"kvcore-robust: {a.binary} is not an executable", file=sys.stderr)
        return 2
    out = a.out or tempfile.mkdtemp(prefix="kvcore-robust-")
    os.makedirs(out, exist_ok=True)
    cluster = Cluster(a.binary, a.members, a.data_dir or os.path.join(out, "data"), a.workers)
    for m in cluster.members:
        m.argv += ["--heartbeat-interval", str(a.heartbeat_interval),
                   "--election-timeout", str(a.election_timeout)]
        if a.binary == "kvcore" and "defrag-leader" in kinds:
            m.env[failpoints.ENV] = SLOW_DEFRAG
    rng = random.Random(a.seed)
    results = []
    t0 = time.monotonic()
    try:
        cluster.start()
        for i in range(a.rounds):
            fault = rng.choice(kinds)
            bug = bugs[i % len(bugs)] if bugs else ""
            res = run_round(cluster, i, fault, a.seed, RoundPlan(a.clients, a.watchers), out,
                            bug)
            results.append(res)
            print(f"round {i:4d} {fault:20s} {res.verdict:9s} ops={res.ops} "
                  f"acked={res.acknowledged} unknown={res.unknown_outcome} "
                  f"events={res.events} {res.seconds}s", flush=True)
            for p in res.problems[:5]:
                print(f"    {p}", flush=True)
    except (TimeoutError, RuntimeError) as e:
        print(f"kvcore-robust: the cluster stopped serving: {e}", file=sys.stderr)
        _report(out, a, results, time.monotonic() - t0, error=str(e))
        return 2
    finally:
        cluster.close()
    summary = _report(out, a, results, time.monotonic() - t0)
    print(json.dumps(summary["summary"]))
    if summary["summary"]["violation"]:
        return 1
    return 3 if summary["summary"]["unknown"] else 0


def _report(out, a, results, seconds, error: str = "") -> dict:
    verdicts = Counter(r.verdict for r in results)
    summary = {"binary": a.binary, "members": a.members, "seed": a.seed,
               "rounds": len(results), "ok": verdicts["ok"],
               "violation": verdicts["violation"], "unknown": verdicts["unknown"],
               "faults": dict(Counter(r.fault for r in results)),
               "acknowledged_writes": sum(r.acknowledged for r in results),
               "seconds": round(seconds, 1), "error": error, "report": out}
    doc = {"summary": summary, "rounds": [asdict(r) for r in results]}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(doc, f, indent=1)
    return doc


if __name__ == "__main__":
    sys.exit(main())
