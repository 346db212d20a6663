"""The MVCC key-value store, after etcd's mvcc package.

Every change happens at a store revision (main, sub): ``main`` increases by one per
write transaction that changes something, ``sub`` numbers the changes inside it.
Each key records create_revision, mod_revision and version (1 on creation, +1 per
put, back to 0 when deleted: a tombstone ends the key's generation). Old revisions
stay readable until compacted.

Values live in LMDB keyed by revision (backend.rev_key), as the serialized
``mvccpb.KeyValue`` clients receive; the in-memory revision index (TreeIndex) maps
key -> generations of revisions. The store is driven by one thread (the core's
apply loop); reads and writes of one batch share an LMDB write transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import lmdb

from kvcore import failpoints
from kvcore.api import kv_pb2, wire
from kvcore.mvcc import longkeys
from kvcore.mvcc.index import TreeIndex
from kvcore.storage import backend as be


class CompactedError(Exception):
    """Revision below the compaction point (etcd: ErrCompacted)."""


class FutureRevError(Exception):
    """Revision above the current one (etcd: ErrFutureRev)."""


@dataclass
class RangeResult:
    kvs: list            # serialized mvccpb.KeyValue, key order
    count: int           # keys in the range at the revision, before limit
    rev: int             # the store revision the read was served at (header revision)


@dataclass(slots=True)
class Change:
    """One event of a committed revision, for watchers and lease bookkeeping."""
    kind: int            # kv_pb2.Event.PUT or DELETE
    key: bytes
    kv: bytes            # serialized KeyValue (for DELETE: key + mod_revision)
    prev: Optional[bytes] = None
    lease: int = 0


def _decode(b: bytes) -> kv_pb2.KeyValue:
    kv = kv_pb2.KeyValue()
    kv.ParseFromString(b)
    return kv


def _stored_key(v: bytes) -> bytes:
    """The key of a stored KeyValue. Every encoder writes field 1 (the key) first, so
    its length is read straight off the front (restart reads every revision of the
    store: a whole protobuf parse each cost twice as much); anything else is parsed."""
    if len(v) > 2 and v[0] == 0x0A:
        n = v[1]
        if n < 0x80:
            if 2 + n <= len(v):
                return v[2:2 + n]
        elif len(v) > 3 and v[2] < 0x80:
            n = (n & 0x7F) | (v[2] << 7)
            if 3 + n <= len(v):
                return v[3:3 + n]
    return _decode(v).key


PUT = kv_pb2.Event.PUT
key_value = wire.key_value
put_rows = wire.put_rows
rev_key = be.rev_key


class KVStore:
    def __init__(self, backend: be.Backend):
        self.b = backend
        self.index = TreeIndex()
        self.current_rev = 1          # etcd starts at 1 with an empty store
        self.compact_main_rev = -1
        self.consistent_index = 0
        self._restore()

    # ---- startup ----

    def _restore(self) -> None:
        """Rebuild the revision index from the key space (etcd's restore)."""
        with self.b.begin_read() as txn:
            self.consistent_index = self.b.get_meta(be.META_CONSISTENT_INDEX, txn)
            finished = self.b.get_meta(be.META_FINISHED_COMPACT, txn)
            scheduled = self.b.get_meta(be.META_SCHEDULED_COMPACT, txn)
            cur = txn.cursor(db=self.b.key)
            last_main = 0
            put, tombstone = self.index.put, self.index.tombstone
            for k, v in cur.iternext():
                main, sub, tomb = be.parse_rev_key(k)
                key = _stored_key(v)
                if tomb:
                    tombstone(key, main, sub)
                else:
                    put(key, main, sub)
                last_main = main
        if finished:
            self.compact_main_rev = finished
        self.current_rev = max(1, last_main, self.compact_main_rev)
        if len(self.index) and not self._latest_count():
            self._rebuild_latest()
        if scheduled and scheduled != finished:
            # A compaction was recorded but not finished before a crash: finish it.
            with self.b.begin_write() as txn:
                self._compact_physical(txn, scheduled)
            self.compact_main_rev = scheduled

    def _latest_count(self) -> int:
        with self.b.begin_read() as txn:
            return (txn.stat(self.b.latest)["entries"]
                    + txn.stat(self.b.latest_long)["entries"])

    def live_keys(self) -> int:
        """Keys not deleted (etcd's keys gauge: +1 on a key's creation, -1 on its
        tombstone); the index also holds deleted keys until a compaction."""
        return self._latest_count()

    def _rebuild_latest(self) -> None:
        """Data written before the ``latest`` database existed: derive it."""
        revs, _ = self.index.revisions(b"\x00", b"\x00", self.current_rev, 0)
        with self.b.begin_write() as txn:
            for key, main, sub in revs:
                _put_latest(txn, self.b, key, be.rev_key(main, sub))
            txn.put(be.META_CURRENT_REV, be.u64(self.current_rev), db=self.b.meta)

    # ---- reads ----

    def _check_rev(self, rev: int, cur: int) -> int:
        if rev <= 0:
            return cur
        if rev > cur:
            raise FutureRevError()
        if rev < self.compact_main_rev:
            raise CompactedError()
        return rev

    def range(self, txn, key: bytes, end: Optional[bytes], rev: int, limit: int = 0,
              count_only: bool = False, cur: Optional[int] = None) -> RangeResult:
        """Keys in [key, end) as of ``rev`` (<= 0: now). ``cur`` overrides the
        current revision (a write txn reads its own uncommitted revision)."""
        cur = self.current_rev if cur is None else cur
        at = self._check_rev(rev, cur)
        if not end:
            found = self.index.get(key, at)
            if found is None:
                return RangeResult([], 0, cur)
            if count_only:
                return RangeResult([], 1, cur)
            return RangeResult([txn.get(be.rev_key(found[0], found[1]), db=self.b.key)], 1, cur)
        if count_only:
            return RangeResult([], self.index.count_revisions(key, end, at), cur)
        revs, total = self.index.revisions(key, end, at, limit)
        get = txn.get
        db = self.b.key
        return RangeResult([get(be.rev_key(m, s), db=db) for _, m, s in revs], total, cur)

    def kv_at(self, txn, key: bytes, rev: int) -> Optional[bytes]:
        """The key's KeyValue bytes as of ``rev`` (None if absent or compacted)."""
        if rev < max(self.compact_main_rev, 1):
            return None
        found = self.index.get(key, rev)
        if found is None:
            return None
        return txn.get(be.rev_key(found[0], found[1]), db=self.b.key)

    def history(self, txn, key: bytes, end: Optional[bytes], from_rev: int,
                max_revs: int) -> tuple[list, int]:
        """Events of keys in range with revision >= from_rev, in revision order:
        -> ([(main, kind, kv bytes)], next revision to read). Whole revisions only,
        at most ``max_revs`` of them (etcd's watchBatchMaxRevs: a batch is counted in
        revisions, however many events each holds)."""
        revs = self.index.range_since(key, end, from_rev, True)
        out = []
        cur = txn.cursor(db=self.b.key)
        last_main = None
        seen = 0
        for main, sub in revs:
            if main != last_main:
                if seen >= max_revs:
                    return out, main
                seen += 1
                last_main = main
            rk = be.rev_key(main, sub)
            if not cur.set_range(rk) or cur.key()[:16] != rk:
                continue  # compacted away meanwhile
            if len(cur.key()) > 16:
                k = _decode(cur.value()).key
                out.append((main, kv_pb2.Event.DELETE,
                            kv_pb2.KeyValue(key=k, mod_revision=main).SerializeToString()))
            else:
                out.append((main, kv_pb2.Event.PUT, cur.value()))
        return out, self.current_rev + 1

    # ---- writes ----

    def write(self, txn) -> "WriteTxn":
        return WriteTxn(self, txn)

    def set_consistent_index(self, txn, index: int, term: int) -> None:
        txn.put(be.META_CONSISTENT_INDEX, be.u64(index), db=self.b.meta)
        txn.put(be.META_TERM, be.u64(term), db=self.b.meta)
        self.consistent_index = index

    def compact(self, txn, rev: int) -> int:
        """Compact history below ``rev`` (etcd's Compact). Physical: the removed
        revisions are gone from LMDB when this returns. -> how many were removed."""
        if rev <= self.compact_main_rev:
            raise CompactedError()
        if rev > self.current_rev:
            raise FutureRevError()
        if failpoints.ACTIVE is not None:
            failpoints.hit("compact-before")
        txn.put(be.META_SCHEDULED_COMPACT, be.u64(rev), db=self.b.meta)
        removed = self._compact_physical(txn, rev)
        self.compact_main_rev = rev
        return removed

    def _compact_physical(self, txn, rev: int) -> int:
        keep = self.index.compact(rev)
        cur = txn.cursor(db=self.b.key)
        end = be.rev_key(rev + 1, 0)
        doomed = []
        if cur.first():
            for k in cur.iternext(keys=True, values=False):
                if k >= end:
                    break
                main, sub, _ = be.parse_rev_key(k)
                if (main, sub) not in keep:
                    doomed.append(k)
        for k in doomed:
            txn.delete(k, db=self.b.key)
        txn.put(be.META_FINISHED_COMPACT, be.u64(rev), db=self.b.meta)
        return len(doomed)

    def hash_kv(self, txn, rev: int) -> tuple[int, int, int]:
        """etcd's HashKV (kvstore.go hashByRev): CRC-32C of "key", then of each
        revision key (etcd's 17-byte form) and value up to ``rev``, leaving out
        revisions at or below the compaction point that compacting at ``rev`` would
        remove. -> (hash, compact_revision (-1 before any compaction), hash_revision)."""
        from kvcore.storage.codec import walcodec
        crc = walcodec.crc32c
        compact = self.compact_main_rev
        if 0 < rev <= compact:
            raise CompactedError()
        at = self._check_rev(rev, self.current_rev)
        keep = self.index.keep(at)
        h = crc(b"key")
        upper = be.rev_key(at + 1, 0)
        lower = be.rev_key(compact + 1, 0) if compact >= 0 else b""
        cur = txn.cursor(db=self.b.key)
        if cur.first():
            for k, v in cur:
                if k >= upper:
                    break
                if keep and k < lower and be.parse_rev_key(k)[:2] not in keep:
                    continue
                h = crc(v, crc(k[:8] + b"_" + k[8:], h))
        return h, compact, at


class ReadView:
    """A consistent read of the store (an LMDB read transaction + the revision)."""

    __slots__ = ("s", "txn", "rev")

    def __init__(self, store: KVStore, txn):
        self.s = store
        self.txn = txn
        self.rev = store.current_rev

    def range(self, key, end, rev=0, limit=0, count_only=False) -> RangeResult:
        return self.s.range(self.txn, key, end, rev, limit, count_only, cur=self.rev)


class WriteTxn:
    """One write transaction: at most one new store revision (etcd's storeTxnWrite)."""

    def __init__(self, store: KVStore, txn):
        self.s = store
        self.txn = txn
        self.begin_rev = store.current_rev
        self.changes: list[Change] = []
        # What every put of this txn uses, looked up once (a 16-put txn puts 16 times).
        self._put_kv = txn.put
        self._key_db = store.b.key
        self._latest_db = store.b.latest
        self._long_db = store.b.latest_long

    @property
    def rev(self) -> int:
        """The revision reads inside this txn see (includes its own changes)."""
        return self.begin_rev + 1 if self.changes else self.begin_rev

    def range(self, key, end, rev=0, limit=0, count_only=False) -> RangeResult:
        return self.s.range(self.txn, key, end, rev, limit, count_only, cur=self.rev)

    def put(self, key: bytes, value: bytes, lease: int, prev: Optional[bytes] = None) -> int:
        """Write key=value; ``prev`` is the key's current KeyValue bytes if the
        caller already has them. Returns the revision of the change."""
        rev = self.begin_rev + 1
        changes = self.changes
        sub = len(changes)
        # The index first: it answers the KeyValue's create revision and version.
        # (A failed LMDB write below is fatal to the member: the batch is aborted.)
        create, version = self.s.index.put_version(key, rev, sub)
        data = key_value(key, create, rev, version, value, lease)
        rk = rev_key(rev, sub)
        put = self._put_kv
        # Revision keys only grow: appended at the end of the key database without a
        # search (LMDB's MDB_APPEND); a key not above the last one is put as before.
        if not put(rk, data, append=True, db=self._key_db):
            put(rk, data, db=self._key_db)
        if len(key) <= longkeys.LIMIT:
            put(key, rk, db=self._latest_db)
        else:
            longkeys.put(self.txn, self._long_db, key, rk)
        changes.append(Change(PUT, key, data, prev, lease))
        return rev

    def put_plain(self, puts: list) -> int:
        """``put`` of each (key, value, lease) in order, none wanting its previous
        value: one pass and one LMDB cursor call per database for a txn's puts
        instead of two Python-level LMDB calls per put. Returns the revision."""
        rev = self.begin_rev + 1
        changes = self.changes
        rows, latest, made = put_rows(self.s.index.put_version, puts, rev, len(changes),
                                      Change, PUT)
        changes += made
        txn = self.txn
        # Revision keys only grow (MDB_APPEND, see put); if LMDB refuses one, all of
        # them are put again normally (a put of the same pair is idempotent).
        if txn.cursor(db=self._key_db).putmulti(rows, append=True)[1] != len(rows):
            txn.cursor(db=self._key_db).putmulti(rows)
        try:
            txn.cursor(db=self._latest_db).putmulti(latest)
        except lmdb.BadValsizeError:
            # A key longer than LMDB takes (putmulti stops there): all one by one,
            # which puts the ones before it again, the same.
            for key, rk in latest:
                _put_latest(txn, self.s.b, key, rk)
        return rev

    def delete_range(self, key: bytes, end: Optional[bytes]) -> list[bytes]:
        """Delete every live key in range; returns their KeyValue bytes (prev_kv)."""
        s = self.s
        at = self.rev
        if not end:
            hit = s.index.get(key, at)
            targets = [(key, hit[0], hit[1])] if hit else []
        else:
            targets = s.index.revisions(key, end, at, 0)[0]
        rev = self.begin_rev + 1
        found = []
        for k, m, sb in targets:
            prev = self.txn.get(be.rev_key(m, sb), db=s.b.key)
            found.append(prev)
            sub = len(self.changes)
            tomb = kv_pb2.KeyValue(key=k, mod_revision=rev).SerializeToString()
            self.txn.put(be.rev_key(rev, sub) + be.TOMBSTONE,
                         kv_pb2.KeyValue(key=k).SerializeToString(), db=s.b.key)
            s.index.tombstone(k, rev, sub)
            if len(k) <= longkeys.LIMIT:
                self.txn.delete(k, db=s.b.latest)
            else:
                longkeys.delete(self.txn, s.b.latest_long, k)
            self.changes.append(Change(kv_pb2.Event.DELETE, k, tomb, prev))
        return found

    def end(self) -> int:
        """Finish: the store's revision becomes this txn's if it changed anything."""
        if self.changes:
            self.s.current_rev = self.begin_rev + 1
            self.txn.put(be.META_CURRENT_REV, be.u64(self.s.current_rev), db=self.s.b.meta)
        return self.s.current_rev


def _put_latest(txn, b: be.Backend, key: bytes, rk: bytes) -> None:
    if len(key) <= longkeys.LIMIT:
        txn.put(key, rk, db=b.latest)
    else:
        longkeys.put(txn, b.latest_long, key, rk)
