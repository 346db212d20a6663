"""The WAL's own append + fdatasync, without the zero-filler (kvcore/storage/walfill.py),
with it (O_DIRECT zeros) and with it writing through the page cache, in rotating order:
the fdatasync p50/p90/p99 of ``--n`` single-entry saves per run, in one process, with
no server around it.

    python -m bench.probes.experiments.wal_fill [--rounds 5] [--n 2000]
        [--val-size 8] [--dir DIR (on the filesystem to measure; default a temp dir)]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

from kvcore.storage import walfill
from kvcore.storage.wal import WAL, HardState


VARIANTS = ("fallocated", "filled", "buffered")   # no filler; O_DIRECT zeros; page cache


def one_run(variant: str, n: int, val_size: int, parent: str | None) -> dict:
    d = tempfile.mkdtemp(prefix="walfill-", dir=parent)
    walfill.DIRECT = variant != "buffered"
    try:
        w = WAL(d, fill_ahead=walfill.AHEAD if variant != "fallocated" else 0)
        w.open(1, 2)
        took: list = []
        w.on_fsync = took.append
        time.sleep(0.3)     # the filler's first chunks, as on a member that just started
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            w.save(HardState(2, 1, i - 1), [(i, 2, 0, b"v" * val_size)])
        per = (time.perf_counter() - t0) / n
        w.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    took.sort()
    return {"p50": took[len(took) // 2] * 1e6, "p90": took[int(len(took) * 0.9)] * 1e6,
            "p99": took[int(len(took) * 0.99)] * 1e6,
            "save": per * 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=8)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    runs: dict = {v: [] for v in VARIANTS}
    for i in range(a.rounds):
        for v in VARIANTS[i % 3:] + VARIANTS[:i % 3]:
            r = one_run(v, a.n, a.val_size, a.dir)
            runs[v].append(r)
            print(f"round {i + 1} {v:10}: fdatasync p50 {r['p50']:.1f} us  p90 "
                  f"{r['p90']:.1f} us  p99 {r['p99']:.1f} us  save {r['save']:.1f} us", flush=True)
    for v, rs in runs.items():
        med = {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in ("p50", "p90", "p99", "save")}
        print(f"median {v:10}: fdatasync p50 {med['p50']:.1f} us  p90 {med['p90']:.1f} us  "
              f"p99 {med['p99']:.1f} us  save {med['save']:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
