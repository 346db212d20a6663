"""Filesystem work per lone put: ext4 tracepoints counted with `perf stat -p` over the
server's processes (core and workers, or etcd) while ``--total`` puts run, for two
kvcore trees and etcd 3.5.1. Needs perf with tracepoint access (kernel threads such as
jbd2 and the flusher are not in the count: only what the server's own threads do).

    python -m bench.probes.experiments.ext4_events --a /work/main --b . [--total 2000]
        [--val-size 8] [--no-etcd]

ext4_da_write_begin counts pages written through the page cache, ext4_sync_file_enter
each fsync/fdatasync, ext4_mark_inode_dirty the inode updates, ext4_writepages the
writebacks a sync started.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.probes.experiments.lone_put import children, start

EVENTS = ("ext4:ext4_sync_file_enter", "ext4:ext4_da_write_begin", "ext4:ext4_mark_inode_dirty",
          "ext4:ext4_writepages", "ext4:ext4_fc_commit_start")


def per_put(srv, total: int, val_size: int) -> dict:
    put = [sys.executable, "-m", "bench", "--endpoints", f"127.0.0.1:{srv.port}", "--conns",
           "1", "--clients", "1", "--no-progress", "--max-seconds", "60"]
    load = ["put", "--val-size", str(val_size)]
    subprocess.run(put + ["--total", "300"] + load, capture_output=True, timeout=120, check=True)
    time.sleep(1.0)   # past the warm-up's own background work
    pids = [srv.proc.pid] + children(srv.proc.pid)
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(EVENTS),
                             "-p", ",".join(map(str, pids))], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    subprocess.run(put + ["--total", str(total)] + load, capture_output=True, timeout=180,
                   check=True)
    perf.send_signal(2)
    out = perf.communicate(timeout=30)[1]
    counts = {}
    for line in out.strip().splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].strip().isdigit():
            counts[f[2].split(":")[-1]] = int(f[0]) / total
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", default=".")
    ap.add_argument("--total", type=int, default=2000)
    ap.add_argument("--val-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-etcd", action="store_true")
    a = ap.parse_args(argv)
    for name, tree in [("A", a.a), ("B", a.b)] + ([] if a.no_etcd else [("etcd", None)]):
        srv = start(name, tree, a.workers)
        try:
            c = per_put(srv, a.total, a.val_size)
        finally:
            srv.stop()
        print(f"{name:4} ({tree or 'etcd 3.5.1'}) per put: "
              + "  ".join(f"{k.replace('ext4_', '')} {v:.2f}" for k, v in c.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
