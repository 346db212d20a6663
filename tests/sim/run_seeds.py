"""Run a range of simulator seeds and summarise (for long background runs).

    python -m tests.sim.run_seeds --start 0 --count 100000 [--progress 5000]

Prints progress lines, every failure with its replay command, and a final summary.
"""
from __future__ import annotations

import argparse
import sys
import time

from .cluster import run_seed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--progress", type=int, default=1000)
    a = ap.parse_args(argv)
    t0 = time.time()
    fails = []
    sizes = {3: 0, 5: 0, 7: 0}
    for k, seed in enumerate(range(a.start, a.start + a.count), 1):
        try:
            r = run_seed(seed)
            sizes[r["n"]] += 1
        except AssertionError as e:
            fails.append(seed)
            print(f"FAIL seed {seed}: {e}", flush=True)
        if k % a.progress == 0:
            print(f"progress: {k} seeds ({a.start}..{seed}), {len(fails)} failures, "
                  f"{time.time() - t0:.0f}s", flush=True)
    print(f"done: {a.count} seeds {a.start}..{a.start + a.count - 1}, sizes {sizes}, "
          f"{len(fails)} failures {fails[:20]}, {time.time() - t0:.0f}s", flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
