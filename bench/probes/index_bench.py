"""Micro-benchmark: compiled revision index (kvcore._ext.revindex) vs its Python twin.

    python -m bench.probes.index_bench [--keys 100000] [--rounds 7] [--ops 20000]

Each round builds nothing: both indexes are filled once (same keys, same revisions),
then every operation is timed per implementation, alternating compiled/twin within
each round so a noisy shared host hurts both alike.  Reported per-call times include
the Python call overhead of the caller's loop (that is what a caller pays); the ratio
is twin / compiled, medians over the rounds.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from kvcore import _ext
from kvcore.mvcc import index_py


def _fill(ti, keys, seed):
    rnd = random.Random(seed)
    main = 0
    for k in keys:                       # one create per key
        main += 1
        ti.put(k, main, 0)
    for _ in range(len(keys) // 2):      # then updates and some deletes + re-creates
        main += 1
        k = keys[rnd.randrange(len(keys))]
        if rnd.random() < 0.1:
            try:
                ti.tombstone(k, main, 0)
            except KeyError:
                ti.put(k, main, 0)
        else:
            ti.put(k, main, 0)
    return main


def _workloads(keys, rev, ops, seed):
    rnd = random.Random(seed)
    n = len(keys)
    sample = [keys[rnd.randrange(n)] for _ in range(ops)]
    past = [rnd.randrange(1, rev + 1) for _ in range(ops)]
    starts = [rnd.randrange(n - 101) for _ in range(ops // 20)]
    ranges = [(keys[i], keys[i + 100]) for i in starts]
    new_keys = [b"zz-new-%08d" % i for i in range(ops)]

    def get_latest(ti):
        get = ti.get
        for k in sample:
            get(k, rev)
        return len(sample)

    def get_past(ti):
        get = ti.get
        for k, r in zip(sample, past):
            get(k, r)
        return len(sample)

    def put_existing(ti, _state={}):
        put = ti.put
        m = _state.setdefault(id(ti), rev + 1)
        for k in sample:
            m += 1
            put(k, m, 0)
        _state[id(ti)] = m
        return len(sample)

    def put_new(ti, _state={}):
        put = ti.put
        m = _state.setdefault(id(ti), 10 * rev)
        r = _state.setdefault(("round", id(ti)), 0)
        _state[("round", id(ti))] = r + 1
        for k in new_keys:
            m += 1
            put(k + b"-%d" % r, m, 0)
        _state[id(ti)] = m
        return len(new_keys)

    def range100(ti):
        revs = ti.revisions
        for a, b in ranges:
            revs(a, b, rev, 0)
        return len(ranges)

    def range100_limit10(ti):
        revs = ti.revisions
        for a, b in ranges:
            revs(a, b, rev, 10)
        return len(ranges)

    def count100(ti):
        count = ti.count_revisions
        for a, b in ranges:
            count(a, b, rev)
        return len(ranges)

    def since100(ti):
        since = ti.range_since
        r = rev - rev // 4
        for a, b in ranges:
            since(a, b, r)
        return len(ranges)

    def keep_all(ti):
        ti.keep(rev // 2)
        return 1

    return [("get (latest rev)", get_latest), ("get (past rev)", get_past),
            ("put (existing key)", put_existing), ("put (new key)", put_new),
            ("revisions, 100 keys", range100), ("revisions, 100 keys limit 10", range100_limit10),
            ("count_revisions, 100 keys", count100), ("range_since, 100 keys", since100),
            ("keep, all keys", keep_all)]


def _time(fn, ti):
    gc.collect()
    t0 = time.perf_counter()
    n = fn(ti)
    return (time.perf_counter() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--ops", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    revindex = _ext.compiled("revindex")   # NativeBuildMissing says how to build it
    rnd = random.Random(args.seed)
    keys = sorted({b"/registry/pods/ns-%03d/pod-%07d" % (rnd.randrange(100), rnd.randrange(10**7))
                   for _ in range(args.keys)})
    impls = {"compiled": revindex.TreeIndex(), "twin": index_py.TreeIndex()}
    revs = {}
    for name, ti in impls.items():
        t0 = time.perf_counter()
        revs[name] = _fill(ti, keys, args.seed)
        print(f"fill {name:8s}: {len(keys)} keys in {time.perf_counter() - t0:.2f} s")
    assert revs["compiled"] == revs["twin"]
    loads = _workloads(keys, revs["compiled"], args.ops, args.seed)
    results = {(w, name): [] for w, _ in loads for name in impls}
    for r in range(args.rounds):
        order = ["compiled", "twin"] if r % 2 == 0 else ["twin", "compiled"]
        for wname, fn in loads:
            for name in order:
                results[(wname, name)].append(_time(fn, impls[name]))
    assert impls["compiled"].dump() == impls["twin"].dump(), "implementations diverged"
    print(f"\n{len(keys)} keys, {args.rounds} rounds (median), per call:")
    print(f"{'operation':32s} {'compiled':>12s} {'twin':>12s} {'twin/compiled':>14s}")
    for wname, _ in loads:
        c = statistics.median(results[(wname, "compiled")])
        t = statistics.median(results[(wname, "twin")])
        print(f"{wname:32s} {_fmt(c):>12s} {_fmt(t):>12s} {t / c:13.1f}x")

    # compaction: one call over the whole index, on fresh copies (it modifies them)
    times = {"compiled": [], "twin": []}
    for r in range(max(3, args.rounds // 2)):
        for name, cls in (("compiled", revindex.TreeIndex), ("twin", index_py.TreeIndex)):
            ti = cls()
            rev = _fill(ti, keys, args.seed)
            gc.collect()
            t0 = time.perf_counter()
            ti.compact(rev // 2)
            times[name].append(time.perf_counter() - t0)
    c, t = statistics.median(times["compiled"]), statistics.median(times["twin"])
    print(f"{'compact, all keys':32s} {_fmt(c):>12s} {_fmt(t):>12s} {t / c:13.1f}x")


def _fmt(sec):
    if sec >= 1e-3:
        return f"{sec * 1e3:.2f} ms"
    return f"{sec * 1e6:.3f} us"


if __name__ == "__main__":
    main()
