"""Snapshot save and restore at scale, kvcore against etcd 3.5.1 on the same data.

A bbolt database in etcd's schema of about SIZE bytes (KeyValues of 1 KiB values,
written by kvcore/bbolt directly) is restored into both (`kvcoreutl snapshot restore`,
`etcdutl snapshot restore`); each member is started and `etcdctl snapshot save` taken
from it, timed, while the member's memory is sampled (VmRSS, and RssAnon: the heap,
without the file pages LMDB/bbolt map while reading).

    python -m bench.probes.experiments.snapshot_scale --size-mib 512 --dir /tmp/snapscale
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

from kvcore.api import kv_pb2
from kvcore.bbolt import Writer
from kvcore.snapshot import schema as sc
from tests import etcd351, servers


def make_db(path: str, size: int, value_size: int = 1024) -> int:
    n = size // (value_size + 40)
    value = b"v" * value_size

    def keys():
        for i in range(n):
            rev = i + 2
            kv = kv_pb2.KeyValue(key=b"key%09d" % i, value=value, create_revision=rev,
                                 mod_revision=rev, version=1).SerializeToString()
            yield sc.rev_bytes(rev), kv
    with open(path, "wb") as f:
        w = Writer(f)
        for name in sc.BUCKETS:
            if name == b"key":
                w.bucket(name, keys())
            elif name == b"meta":
                w.bucket(name, [(sc.META_CONSISTENT_INDEX, sc.u64(1)), (sc.META_TERM, sc.u64(1))])
            elif name == b"cluster":
                w.bucket(name, [(sc.CLUSTER_VERSION, sc.ETCD_CLUSTER_VERSION)])
            else:
                w.bucket(name, [])
        w.close()
    return n


def _mem(pid: int) -> tuple[int, int]:
    rss = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    return rss, anon


def timed_save(srv, out: str) -> dict:
    base = _mem(srv.proc.pid)
    peak = list(base)
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, anon = _mem(srv.proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
            time.sleep(0.05)
    t = threading.Thread(target=sample)
    t.start()
    t0 = time.monotonic()
    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "--command-timeout=600s",
                        "snapshot", "save", out], capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    done.set()
    t.join()
    assert p.returncode == 0, p.stderr[-500:]
    return {"save_s": round(took, 2), "rss_growth_mib": round((peak[0] - base[0]) / 2**20, 1),
            "anon_growth_mib": round((peak[1] - base[1]) / 2**20, 1),
            "snapshot_bytes": os.path.getsize(out)}


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--size-mib", type=int, default=512)
    a.add_argument("--dir", default="/tmp/snapscale")
    args = a.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    src = os.path.join(args.dir, "src.db")
    t0 = time.monotonic()
    n = make_db(src, args.size_mib << 20)
    out = {"keys": n, "db_bytes": os.path.getsize(src), "write_bbolt_s": round(time.monotonic() - t0, 2)}
    for kind in ("etcd", "kvcore"):
        d = os.path.join(args.dir, kind)
        t0 = time.monotonic()
        if kind == "etcd":
            cmd = [etcd351.ETCDUTL, "snapshot", "restore", src, "--skip-hash-check",
                   "--data-dir", d]
        else:
            cmd = [sys.executable, "-m", "kvcore.utl", "snapshot", "restore", src,
                   "--skip-hash-check", "--data-dir", d]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        assert p.returncode == 0, p.stderr[-500:]
        res = {"restore_s": round(time.monotonic() - t0, 2)}
        srv = (servers.start_etcd(d, binary=etcd351.ETCD) if kind == "etcd"
               else servers.start_kvcore(d, workers=1))
        try:
            res.update(timed_save(srv, os.path.join(args.dir, f"{kind}.snap")))
        finally:
            srv.stop()
        out[kind] = res
    print(json.dumps(out, indent=1))
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
