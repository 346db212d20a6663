"""Reads of the current revision straight from LMDB, for worker processes.

The core keeps the ``latest`` database (user key -> revision of its live KeyValue)
in step with every change, in the same LMDB transaction that stores the change and
the store's revision. One LMDB read transaction therefore sees a consistent current
state, so a worker can answer a Range at the current revision without asking the
core and without the in-memory revision index. Reads at a past revision need the
index and are left to the core (``NeedsCore``).
"""
from __future__ import annotations

from typing import Optional

from kvcore.mvcc.store import RangeResult
from kvcore.storage import backend as be


class NeedsCore(Exception):
    """This read needs the core (a past revision, or a view older than required)."""


class LatestView:
    """Same ``range`` contract as ReadView, for the current revision only."""

    __slots__ = ("b", "txn", "rev", "consistent_index")

    def __init__(self, backend: be.Backend, txn):
        self.b = backend
        self.txn = txn
        m = txn.get(be.META_CURRENT_REV, db=backend.meta)
        self.rev = be.from_u64(m) if m else 1
        ci = txn.get(be.META_CONSISTENT_INDEX, db=backend.meta)
        self.consistent_index = be.from_u64(ci) if ci else 0

    def range(self, key: bytes, end: Optional[bytes], rev: int = 0, limit: int = 0,
              count_only: bool = False) -> RangeResult:
        if rev > 0 and rev != self.rev:
            raise NeedsCore()
        txn, b = self.txn, self.b
        if not end:
            rk = txn.get(key, db=b.latest)
            if rk is None:
                return RangeResult([], 0, self.rev)
            return RangeResult([] if count_only else [txn.get(rk, db=b.key)], 1, self.rev)
        cur = txn.cursor(db=b.latest)
        if not cur.set_range(key):
            return RangeResult([], 0, self.rev)
        open_end = end == b"\x00"
        kvs, total = [], 0
        get = txn.get
        kdb = b.key
        for k, rk in cur:
            if not open_end and k >= end:
                break
            total += 1
            if not count_only and (limit <= 0 or len(kvs) < limit):
                kvs.append(get(rk, db=kdb))
        return RangeResult(kvs, total, self.rev)
