"""Replay one simulator seed exactly, optionally with a trace of the run.

    python -m tests.sim.replay --seed N [-v] [--chaos-ticks T] [--bug-send-before-persist]
"""
from __future__ import annotations

import argparse
import sys

from .cluster import run_seed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    ap.add_argument("--chaos-ticks", type=int, default=150)
    ap.add_argument("--heal-ticks", type=int, default=400)
    ap.add_argument("--bug-send-before-persist", action="store_true",
                    help="use the deliberately broken driver (sends before persisting)")
    a = ap.parse_args(argv)
    trace = print if a.verbose else None
    try:
        out = run_seed(a.seed, trace=trace, chaos_ticks=a.chaos_ticks,
                       heal_ticks=a.heal_ticks,
                       bug_send_before_persist=a.bug_send_before_persist)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"ok: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
