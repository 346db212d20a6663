"""User keys longer than an LMDB key, in the ``latest`` index.

etcd takes keys of any length up to the request limit (1.5 MiB by default); an LMDB
key holds at most ``LIMIT`` (511) bytes. Keys that fit stay in ``latest`` as they
are (user key -> revision bytes). A longer key lives in the ``latest_long``
database, in a bucket under its first ``LIMIT`` bytes: the bucket's value lists
every live key of that prefix, in key order, as (rest of the key, revision bytes).
Bucket order is key order, so walking the buckets from a start key yields the long
keys in order; ``latest.py`` merges them with the short ones.

Long keys are rare (most stores have none), so reads check the bucket count first
and the common case costs one ``stat``.

Bucket value: repeated ``u32 len(rest) | rest | 16-byte revision``, sorted by rest.
"""
from __future__ import annotations

import struct
from typing import Iterator, Optional

from kvcore.storage import backend as be

LIMIT = be.MAX_KEY
_LEN = struct.Struct(">I")
_RK = 16             # backend.rev_key: (main, sub) big-endian


def _entries(bucket: bytes) -> list[tuple[bytes, bytes]]:
    out, i, n = [], 0, len(bucket)
    while i < n:
        (ln,) = _LEN.unpack_from(bucket, i)
        i += 4
        rest = bucket[i:i + ln]
        i += ln
        out.append((rest, bucket[i:i + _RK]))
        i += _RK
    return out


def _pack(entries) -> bytes:
    return b"".join(_LEN.pack(len(rest)) + rest + rk for rest, rk in entries)


def get(txn, db, key: bytes) -> Optional[bytes]:
    """The revision bytes of a live long ``key``, or None."""
    if db is None:
        return None
    bucket = txn.get(key[:LIMIT], db=db)
    if bucket is None:
        return None
    rest = key[LIMIT:]
    for r, rk in _entries(bucket):
        if r == rest:
            return rk
    return None


def put(txn, db, key: bytes, rk: bytes) -> None:
    prefix = key[:LIMIT]
    bucket = txn.get(prefix, db=db)
    entries = dict(_entries(bucket)) if bucket is not None else {}
    entries[key[LIMIT:]] = rk
    txn.put(prefix, _pack(sorted(entries.items())), db=db)


def delete(txn, db, key: bytes) -> None:
    prefix = key[:LIMIT]
    bucket = txn.get(prefix, db=db)
    if bucket is None:
        return
    rest = key[LIMIT:]
    entries = [e for e in _entries(bucket) if e[0] != rest]
    if entries:
        txn.put(prefix, _pack(entries), db=db)
    else:
        txn.delete(prefix, db=db)


def items_from(txn, db, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, revision bytes) of every live long key >= ``start``, in key order."""
    cur = txn.cursor(db=db)
    if not cur.set_range(start[:LIMIT]):
        return
    for prefix, bucket in cur:
        for rest, rk in _entries(bucket):
            k = prefix + rest
            if k >= start:
                yield k, rk


def any_in(txn, db) -> bool:
    """Whether there is any long key (``db`` None: a read-only data dir from before
    long keys were kept apart, which has none)."""
    return db is not None and txn.stat(db)["entries"] > 0
