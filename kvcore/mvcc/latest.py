"""Reads of the current revision straight from LMDB, for worker processes.

The core keeps the ``latest`` database (user key -> revision of its live KeyValue)
in step with every change, in the same LMDB transaction that stores the change and
the store's revision. One LMDB read transaction therefore sees a consistent current
state, so a worker can answer a Range at the current revision without asking the
core and without the in-memory revision index. Reads at a past revision need the
index and are left to the core (``NeedsCore``).
"""
from __future__ import annotations

from heapq import merge
from itertools import chain, islice, takewhile
from typing import Optional

from kvcore.mvcc import longkeys
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
            rk = (txn.get(key, db=b.latest) if len(key) <= longkeys.LIMIT
                  else longkeys.get(txn, b.latest_long, key))
            if rk is None:
                return RangeResult([], 0, self.rev)
            return RangeResult([] if count_only else [txn.get(rk, db=b.key)], 1, self.rev)
        if longkeys.any_in(txn, b.latest_long):    # a stat (~0.7 us): ranges only
            return self._range_with_long(key, end, limit, count_only)
        cur = txn.cursor(db=b.latest)
        if not cur.set_range(key):
            return RangeResult([], 0, self.rev)
        open_end = end == b"\x00"
        kvs = []
        if not count_only:
            get = txn.cursor(db=b.key).get   # a cursor's get: no db= keyword per key
            for k, rk in cur:
                if (not open_end and k >= end) or (limit > 0 and len(kvs) >= limit):
                    break
                kvs.append(get(rk))
            if limit <= 0 or len(kvs) < limit:
                return RangeResult(kvs, len(kvs), self.rev)   # walked the whole range
        return RangeResult(kvs, count_keys(txn, b.latest, key, None if open_end else end),
                           self.rev)

    def _range_with_long(self, key: bytes, end: Optional[bytes], limit: int,
                         count_only: bool) -> RangeResult:
        """``range`` of [key, end) when some keys are longer than an LMDB key: the
        short keys' walk merged with the long keys' buckets (kvcore/mvcc/longkeys.py)."""
        txn, b = self.txn, self.b
        open_end = end == b"\x00"

        def in_range(items):
            return items if open_end else takewhile(lambda kr: kr[0] < end, items)

        kvs = []
        if not count_only:
            cur = txn.cursor(db=b.latest)
            short = iter(cur) if cur.set_range(key) else iter(())
            get = txn.cursor(db=b.key).get
            for _, rk in in_range(merge(short, longkeys.items_from(txn, b.latest_long, key))):
                if limit > 0 and len(kvs) >= limit:
                    break
                kvs.append(get(rk))
            if limit <= 0 or len(kvs) < limit:
                return RangeResult(kvs, len(kvs), self.rev)   # walked the whole range
        n_long = sum(1 for _ in in_range(longkeys.items_from(txn, b.latest_long, key)))
        return RangeResult(kvs, n_long + count_keys(txn, b.latest, key,
                                                    None if open_end else end), self.rev)


_CHUNK = 4096
_ALONE = 16384


def count_keys(txn, db, key: bytes, end: Optional[bytes]) -> int:
    """The number of keys of ``db`` in [key, end) (end None: to the last key).

    Walks the range and, in step with it, the keys outside it (before ``key``, from
    ``end`` on), stopping at whichever side ends first: the count then is the range's
    walk, or the database's entry count (LMDB keeps it) less the outside. The first
    ``_ALONE`` keys of the range are walked alone. A range
    holding most of a large keyspace (a console opening the root, `get --prefix
    --count-only` of the main prefix) costs the few keys around it, not all of it.
    """
    entries = txn.stat(db)["entries"]
    inside_cur = txn.cursor(db=db)
    if not inside_cur.set_range(key):
        return 0
    inside = inside_cur.iternext(keys=True, values=False)
    if end is not None:
        inside = takewhile(end.__gt__, inside)
    before_cur = txn.cursor(db=db)
    # Positioned on the last key before ``key``, if any (set_range put it on >= key).
    before = (before_cur.iterprev(keys=True, values=False)
              if before_cur.set_range(key) and before_cur.prev() else iter(()))
    after = iter(())
    if end is not None:
        after_cur = txn.cursor(db=db)
        if after_cur.set_range(end):
            after = after_cur.iternext(keys=True, values=False)
    outside = chain(before, after)
    # A small range (a console's narrow window, a folder) is counted alone: the walk
    # outside starts only once the range has shown itself to be large.
    n_in = len(list(islice(inside, _ALONE)))
    if n_in < _ALONE:
        return n_in
    n_out = 0
    while True:
        step = len(list(islice(inside, _CHUNK)))
        n_in += step
        if step < _CHUNK:
            return n_in
        step = len(list(islice(outside, _CHUNK)))
        n_out += step
        if step < _CHUNK:
            return entries - n_out
