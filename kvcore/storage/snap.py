"""Raft snapshot metadata files: ``<data-dir>/member/snap/<term:016x>-<index:016x>.snap``.

The key space itself is the LMDB database (member/snap/db/); a snapshot file records
what Raft needs to restart from it: index, term and the membership (ConfState) at
that index. Written (and fsynced) before the WAL records the snapshot, so a WAL
snapshot record always has its file.
"""
from __future__ import annotations

import os
import time
from typing import Optional

from kvcore.raft.codec import decode_snapshot, encode_snapshot
from kvcore.raft.types import Snapshot
from kvcore.storage.codec import walcodec

_SUFFIX = ".snap"


def _name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{_SUFFIX}"


def save(snap_dir: str, snap: Snapshot, observe=None) -> str:
    """``observe(marshal_seconds, fsync_seconds, total_seconds)``, if given, gets
    the timings etcd's snap metrics report."""
    t0 = time.perf_counter()
    md = snap.metadata
    body = encode_snapshot(Snapshot(b"", md))
    t1 = time.perf_counter()
    crc = walcodec.crc32c(body).to_bytes(4, "little")
    path = os.path.join(snap_dir, _name(md.term, md.index))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(crc + body)
        f.flush()
        t2 = time.perf_counter()
        os.fsync(f.fileno())
        t3 = time.perf_counter()
    os.rename(tmp, path)
    dfd = os.open(snap_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    if observe is not None:
        observe(t1 - t0, t3 - t2, time.perf_counter() - t0)
    return path


def load(snap_dir: str, index: int, term: int) -> Optional[Snapshot]:
    """The snapshot file for (index, term), verified, or None if absent."""
    path = os.path.join(snap_dir, _name(term, index))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    crc, body = raw[:4], raw[4:]
    if walcodec.crc32c(body).to_bytes(4, "little") != crc:
        raise ValueError(f"snapshot file {path} is corrupt (checksum mismatch)")
    return decode_snapshot(body)[0]


def release_older(snap_dir: str, keep_index: int, keep: int = 5) -> None:
    """Delete snapshot files older than ``keep_index`` while more than ``keep`` files
    remain (etcd's --max-snapshots; 0 keeps them all)."""
    if keep <= 0:
        return
    files = sorted(n for n in os.listdir(snap_dir) if n.endswith(_SUFFIX))
    old = [n for n in files if int(n[17:33], 16) < keep_index]
    for n in old[:max(0, len(files) - keep)]:
        try:
            os.unlink(os.path.join(snap_dir, n))
        except OSError:
            pass
