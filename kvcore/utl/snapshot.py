"""`kvcoreutl snapshot status` and `snapshot restore`, for etcd's snapshots and kvcore's
alike (both are etcd 3.5 bbolt databases followed by a sha256 trailer)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile

from kvcore.bbolt import Reader
from kvcore.snapshot import schema as sc
from kvcore.storage import private_dirs
from kvcore.storage.codec import walcodec


def status(path: str) -> dict:
    """etcdutl's snapshot status: CRC-32C over every bucket name, key and value in
    order; the last revision of the key bucket; the item count; the database size."""
    crc = walcodec.crc32c
    h = 0
    total = 0
    revision = 0
    with Reader(path) as r:
        for name in r.buckets():
            h = crc(name, h)
            is_key = name == b"key"
            for k, v in r.bucket(name):
                h = crc(v, crc(k, h))
                if is_key:
                    revision = sc.parse_rev(k)[0]
                total += 1
        size = r.size
    return {"hash": h, "revision": revision, "totalKey": total, "totalSize": size}


def _check_bootstrap(name: str, initial_cluster: str, peer_urls: str) -> None:
    """etcd's VerifyBootstrap, for the part a restore depends on."""
    urls = {}
    for part in filter(None, initial_cluster.split(",")):
        n, _, u = part.partition("=")
        urls.setdefault(n, set()).add(u)
    if name not in urls:
        raise ValueError(f"couldn't find local name {name!r} in the initial cluster "
                         "configuration")
    mine = set(filter(None, peer_urls.split(",")))
    if urls[name] != mine:
        raise ValueError(f"--initial-cluster has {name}={','.join(sorted(urls[name]))} but "
                         f"missing from --initial-advertise-peer-urls={','.join(sorted(mine))}")


def _verify(src: str, skip_hash_check: bool) -> None:
    """etcdutl's integrity check: a snapshot ends with the sha256 of what precedes it
    (its size is then 32 past a multiple of 512). Read in chunks; bbolt's pages end
    before the trailer, so the database is then read from the snapshot itself."""
    size = os.path.getsize(src)
    has_hash = size % 512 == 32
    if not has_hash and not skip_hash_check:
        raise ValueError("snapshot missing hash but --skip-hash-check=false")
    if not has_hash or skip_hash_check:
        return
    sha = hashlib.sha256()
    with open(src, "rb") as f:
        left = size - 32
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            sha.update(chunk)
            left -= len(chunk)
        want = f.read(32)
    if sha.digest() != want:
        raise ValueError(f"expected sha256 {_go_bytes(want)}, got {_go_bytes(sha.digest())}")


def _go_bytes(b: bytes) -> str:
    return "[" + " ".join(str(x) for x in b) + "]"


def restore(path: str, data_dir: str = "", wal_dir: str = "", name: str = "default",
            initial_cluster: str = "default=http://localhost:2380",
            token: str = "etcd-cluster", peer_urls: str = "http://localhost:2380",
            skip_hash_check: bool = False) -> None:
    """etcdutl snapshot restore into a kvcore data dir. The data dir is built beside its
    final place and renamed into it once complete: a failure leaves nothing behind.
    kvcore bootstraps the membership at first start from the member's flags, which
    must be the ones given here (etcd's procedure passes the same to both)."""
    _check_bootstrap(name, initial_cluster, peer_urls)
    data_dir = data_dir or f"{name}.etcd"
    if os.path.exists(data_dir) and (not os.path.isdir(data_dir) or os.listdir(data_dir)):
        raise ValueError(f'data-dir "{data_dir}" not empty or could not be read')
    if wal_dir and os.path.exists(wal_dir):
        raise ValueError(f'wal-dir "{wal_dir}" exists')
    if not os.path.exists(path):
        raise ValueError(f"open {path}: no such file or directory")
    parent = os.path.dirname(os.path.abspath(data_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(data_dir)}.restore-", dir=parent)
    try:
        _log("restoring snapshot", path=path, data_dir=data_dir)
        snap_dir = os.path.join(tmp, "member", "snap")
        private_dirs(snap_dir)
        _verify(path, skip_hash_check)
        with Reader(path):
            pass                                  # "invalid database" before any work
        from kvcore.snapshot.restore import import_bbolt
        res = import_bbolt(path, os.path.join(snap_dir, "db"))
        os.chmod(tmp, 0o700)
        if os.path.isdir(data_dir):
            os.rmdir(data_dir)
        os.rename(tmp, data_dir)
        _log("restored snapshot", path=path, data_dir=data_dir, revision=res["revision"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _log(msg: str, **fields) -> None:
    """etcdutl logs progress on stderr."""
    print(json.dumps({"level": "info", "msg": msg, **fields}), file=sys.stderr)
