"""etcd 3.5's bbolt schema -> kvcore's backend (LMDB): the reverse of export.py.

``import_bbolt(path, db_dir)`` reads a bbolt database (an etcd or kvcore snapshot, or
the member/snap/db of a stopped etcd) and writes kvcore's backend at ``db_dir``, in
batches of bounded size. Like etcdutl's restore it drops the membership (members,
members_removed, confState) and the Raft position (consistent index, term): the
restored member bootstraps its cluster from its flags at first start."""
from __future__ import annotations

import struct

from kvcore.bbolt import Reader
from kvcore.snapshot import schema as sc
from kvcore.storage import backend as be

_BATCH_BYTES = 32 << 20      # LMDB keeps a write txn's dirty pages in memory: commit often
_LEASE_ID = struct.Struct(">q")
_LEASE_REC = struct.Struct(">qq")
_ALARM = struct.Struct(">QI")


def import_bbolt(path: str, db_dir: str) -> dict:
    """-> {"revision": last revision, "keys": revisions imported}."""
    with Reader(path) as r:
        names = set(r.buckets())
        if b"key" not in names or b"meta" not in names:
            raise ValueError(f"{path}: not an etcd database (no key or meta bucket)")
        b = be.Backend(db_dir, map_size=max(8 << 30, 2 * r.size))
        try:
            last, count = _keys(b, r.bucket(b"key"))
            with b.begin_write() as txn:
                _meta(b, txn, dict(r.bucket(b"meta")), last)
                for k, v in r.bucket(b"lease") or ():
                    lid, ttl, remaining = sc.parse_lease(v)
                    txn.put(_LEASE_ID.pack(lid), _LEASE_REC.pack(ttl, remaining), db=b.lease)
                for k, _ in r.bucket(b"alarm") or ():
                    txn.put(_ALARM.pack(*sc.parse_alarm(k)), b"", db=b.alarm)
                _auth(b, txn, r)
            b.sync()
        finally:
            b.close()
    return {"revision": last, "keys": count}


def _keys(b: be.Backend, items) -> tuple[int, int]:
    """The key bucket, in order (LMDB appends): etcd's main|'_'|sub[|'t'] -> kvcore's
    main|sub[|'t']."""
    last_key = None
    count = 0
    batch: list = []
    size = 0
    for k, v in items:
        batch.append((k[:8] + k[9:], v))
        size += len(k) + len(v)
        last_key = k
        count += 1
        if size >= _BATCH_BYTES:
            _append(b, batch)
            batch, size = [], 0
    _append(b, batch)
    return (sc.parse_rev(last_key)[0] if last_key else 0), count


def _append(b: be.Backend, batch: list) -> None:
    if batch:
        with b.begin_write() as txn:
            txn.cursor(db=b.key).putmulti(batch, append=True)


def _meta(b: be.Backend, txn, meta: dict, last: int) -> None:
    for theirs, ours in ((sc.META_SCHEDULED_COMPACT, be.META_SCHEDULED_COMPACT),
                         (sc.META_FINISHED_COMPACT, be.META_FINISHED_COMPACT)):
        if theirs in meta:
            txn.put(ours, be.u64(sc.parse_rev(meta[theirs])[0]), db=b.meta)
    txn.put(be.META_CURRENT_REV, be.u64(max(last, 1)), db=b.meta)


def _auth(b: be.Backend, txn, r: Reader) -> None:
    auth = dict(r.bucket(b"auth") or ())
    if sc.AUTH_ENABLED in auth:
        txn.put(b"enabled", b"\x01" if auth[sc.AUTH_ENABLED] == b"\x01" else b"\x00", db=b.auth)
    if sc.AUTH_REVISION in auth:
        txn.put(b"authRevision", auth[sc.AUTH_REVISION], db=b.auth)
    for prefix, bucket in ((b"user/", b"authUsers"), (b"role/", b"authRoles")):
        for k, v in r.bucket(bucket) or ():
            txn.put(be.named_key(prefix, k), v, db=b.auth)
