"""etcd's KV semantics against the MVCC store: Range, and the apply of Put /
DeleteRange / Txn (etcd's apply.go). The checks a request passes before it gets
here are etcd's v3rpc ones in kvcore/api/rules.py.

Responses are built as bytes. A nested response inside a Txn carries a header with
only its revision, as etcd's do; the top-level header is filled by the caller.
"""
from __future__ import annotations

from typing import Optional

from kvcore.api import kv_pb2, rpc_pb2, wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.mvcc.gosort import go_sort
from kvcore.mvcc.store import CompactedError, FutureRevError, KVStore, WriteTxn

RR = rpc_pb2.RangeRequest


def _end(range_end: bytes) -> Optional[bytes]:
    """etcd's mkGteRange: empty = one key; "\\0" = every key >= key."""
    return range_end or None


def mvcc_error(exc: Exception):
    if isinstance(exc, CompactedError):
        return etcd_error(EtcdError.COMPACTED)
    if isinstance(exc, FutureRevError):
        return etcd_error(EtcdError.FUTURE_REV)
    return exc


# ---- apply (etcd's apply.go) ----

_SORT_KEY = {
    RR.KEY: lambda kv: kv.key,
    RR.VERSION: lambda kv: kv.version,
    RR.CREATE: lambda kv: kv.create_revision,
    RR.MOD: lambda kv: kv.mod_revision,
    RR.VALUE: lambda kv: kv.value,
}


def _decode(b: bytes) -> kv_pb2.KeyValue:
    kv = kv_pb2.KeyValue()
    kv.ParseFromString(b)
    return kv


def do_range(reader, r: rpc_pb2.RangeRequest) -> tuple[int, bytes]:
    """-> (header revision, RangeResponse fields after the header)."""
    rev, parts = range_parts(reader, r)
    return rev, wire.range_body(*parts)


def range_parts(reader, r: rpc_pb2.RangeRequest) -> tuple[int, tuple]:
    """do_range's answer as wire.range_parts fields: the caller frames them once
    with the header (wire.join_with_header)."""
    filtering = (r.sort_order != RR.NONE or r.min_mod_revision or r.max_mod_revision or
                 r.min_create_revision or r.max_create_revision)
    limit = r.limit
    fetch = 0 if filtering or limit <= 0 else limit + 1
    try:
        rr = reader.range(r.key, _end(r.range_end), r.revision, fetch, r.count_only)
    except (CompactedError, FutureRevError) as e:
        raise mvcc_error(e)
    kvs = rr.kvs
    more = False
    sort_order = r.sort_order
    if r.sort_target != RR.KEY and sort_order == RR.NONE:
        sort_order = RR.ASCEND
    resort = sort_order != RR.NONE and not (sort_order == RR.ASCEND and r.sort_target == RR.KEY)
    if filtering or r.keys_only or resort:
        objs = [_decode(b) for b in kvs]
        if r.max_mod_revision:
            objs = [kv for kv in objs if kv.mod_revision <= r.max_mod_revision]
        if r.min_mod_revision:
            objs = [kv for kv in objs if kv.mod_revision >= r.min_mod_revision]
        if r.max_create_revision:
            objs = [kv for kv in objs if kv.create_revision <= r.max_create_revision]
        if r.min_create_revision:
            objs = [kv for kv in objs if kv.create_revision >= r.min_create_revision]
        if sort_order != RR.NONE:
            objs = go_sort(objs, _SORT_KEY[r.sort_target], sort_order == RR.DESCEND)
        if limit > 0 and len(objs) > limit:
            objs = objs[:limit]
            more = True
        if r.keys_only:
            for kv in objs:
                kv.value = b""
        kvs = [kv.SerializeToString() for kv in objs]
    elif limit > 0 and len(kvs) > limit:
        kvs = kvs[:limit]
        more = True
    return rr.rev, wire.range_parts(kvs, more, rr.count)


class KVApplier:
    """Runs KV operations on the store. ``lessor`` answers ``exists(lease_id)``."""

    def __init__(self, store: KVStore, lessor):
        self.store = store
        self.lessor = lessor

    # Range: reader is a WriteTxn (inside txns), a ReadView or a LatestView.
    range = staticmethod(do_range)

    def _lease_ok(self, lease: int) -> None:
        if lease and not self.lessor.exists(lease):
            raise etcd_error(EtcdError.LEASE_NOT_FOUND)

    def put(self, w: WriteTxn, p: rpc_pb2.PutRequest,
            value: Optional[bytes] = None) -> tuple[int, bytes]:
        """``value``: p.value if the caller already read it (each read of a protobuf
        bytes field is a new copy, 1 MiB for a large put)."""
        key, lease = p.key, p.lease
        if value is None:
            value = p.value
        ignore_value, ignore_lease, want_prev = p.ignore_value, p.ignore_lease, p.prev_kv
        # etcd's applier checks a put's lease before the key ignore_* needs (a put
        # in a txn was checked already, in checkRequestPut's order: key first)
        if lease and not ignore_lease and not self.lessor.exists(lease):
            raise etcd_error(EtcdError.LEASE_NOT_FOUND)
        prev = None
        if ignore_value or ignore_lease or want_prev:
            found = w.range(key, None).kvs
            prev = found[0] if found else None
            if (ignore_value or ignore_lease) and prev is None:
                raise etcd_error(EtcdError.KEY_NOT_FOUND)
            if ignore_value or ignore_lease:
                old = _decode(prev)
                if ignore_value:
                    value = old.value
                if ignore_lease:
                    lease = old.lease
        rev = w.put(key, value, lease, prev)
        if want_prev and prev is not None:
            return rev, wire.field_bytes(2, prev)
        return rev, b""

    def delete_range(self, w: WriteTxn, d: rpc_pb2.DeleteRangeRequest) -> tuple[int, bytes]:
        prevs = w.delete_range(d.key, _end(d.range_end))
        rev = w.begin_rev + 1 if w.changes else w.begin_rev
        body = wire.field_varint(2, len(prevs))
        if d.prev_kv:
            body += b"".join(wire.field_bytes(3, kv) for kv in prevs)
        return rev, body

    # -- txn --

    def _compare(self, reader, c: rpc_pb2.Compare) -> bool:
        rr = reader.range(c.key, _end(c.range_end), 0)
        target = c.target
        if not rr.kvs:
            if target == rpc_pb2.Compare.VALUE:
                return False  # a missing key has no value to compare
            return self._compare_kv(c, kv_pb2.KeyValue())
        return all(self._compare_kv(c, _decode(b)) for b in rr.kvs)

    @staticmethod
    def _compare_kv(c: rpc_pb2.Compare, kv) -> bool:
        t = c.target
        C = rpc_pb2.Compare
        if t == C.VALUE:
            a, b = kv.value, c.value
        elif t == C.CREATE:
            a, b = kv.create_revision, c.create_revision
        elif t == C.MOD:
            a, b = kv.mod_revision, c.mod_revision
        elif t == C.VERSION:
            a, b = kv.version, c.version
        elif t == C.LEASE:
            a, b = kv.lease, c.lease
        else:
            return False
        res = c.result
        if res == C.EQUAL:
            return a == b
        if res == C.NOT_EQUAL:
            return a != b
        if res == C.GREATER:
            return a > b
        if res == C.LESS:
            return a < b
        return False

    def _check_path(self, reader, r, path: list, cur_rev: int, compact_rev: int,
                    range_errs: list) -> None:
        """Evaluate the compares of ``r`` and of every txn nested on its chosen path
        (etcd's compareToPath), appending each outcome to ``path`` in walk order, and
        check the requests on that path (etcd's checkRequests) in the same walk. All
        of it runs before any write: nested compares see the state before the txn.

        Each ``path`` entry is (outcome, ops of the chosen branch), where a plain put
        (no prev_kv, no ignore_*) is already read out as (key, value, lease) and any
        other op is its RequestOp: the apply walks that list, not the request again.

        etcd checks every put on the path first, then every range: a put's error is
        raised at once, a range's goes to ``range_errs`` for the caller to raise when
        no put failed."""
        ok = all(self._compare(reader, c) for c in r.compare)
        items: list = []
        path.append((ok, items))
        add = items.append
        exists = self.lessor.exists
        for op in (r.success if ok else r.failure):
            w = op.WhichOneof("request")
            if w == "request_put":
                p = op.request_put
                ignore_lease, ignore_value = p.ignore_lease, p.ignore_value
                if ignore_lease or ignore_value:
                    if not reader.range(p.key, None).kvs:
                        raise etcd_error(EtcdError.KEY_NOT_FOUND)
                lease = 0 if ignore_lease else p.lease
                if lease and not exists(lease):
                    raise etcd_error(EtcdError.LEASE_NOT_FOUND)
                if ignore_lease or ignore_value or p.prev_kv:
                    add(op)
                else:
                    add((p.key, p.value, lease))
                continue
            add(op)
            if w == "request_range":
                rev = op.request_range.revision
                if rev > cur_rev:
                    range_errs.append(EtcdError.FUTURE_REV)
                # etcd's checkRequestRange: any revision but 0 below FirstRev (the
                # compaction, -1 before any) is compacted, negative ones included
                elif rev and rev < compact_rev:
                    range_errs.append(EtcdError.COMPACTED)
            elif w == "request_txn":
                self._check_path(reader, op.request_txn, path, cur_rev, compact_rev,
                                 range_errs)

    def txn(self, w: WriteTxn, r: rpc_pb2.TxnRequest) -> tuple[int, bytes]:
        path: list = []
        range_errs: list = []
        self._check_path(w, r, path, w.rev, self.store.compact_main_rev, range_errs)
        if range_errs:
            raise etcd_error(range_errs[0])
        body, _ = self._apply_txn(w, path, 0)
        rev = w.begin_rev + 1 if w.changes else w.begin_rev
        return rev, body

    def txn_puts(self, w: WriteTxn, puts: list) -> tuple[int, bytes]:
        """``txn`` of a Txn that is nothing but plain puts, given as [(key, value,
        lease)] (wire.txn_plain_puts): the same checks (every lease exists, before
        any write), writes and response bytes, without walking protobuf messages."""
        exists = self.lessor.exists
        for _, _, lease in puts:
            if lease and not exists(lease):
                raise etcd_error(EtcdError.LEASE_NOT_FOUND)
        rev = w.put_plain(puts)
        return rev, _SUCCEEDED + _op_response(2, rev, b"") * len(puts)

    def _apply_txn(self, w: WriteTxn, path, pos) -> tuple[bytes, int]:
        ok, items = path[pos]
        pos += 1
        parts = [wire.field_varint(2, 1 if ok else 0)]
        # The ops of a txn share one revision, and a put without prev_kv answers
        # only its header: each distinct (kind, revision) is assembled once.
        bare: dict = {}
        # A run of plain puts (the common txn) is written in one WriteTxn.put_plain
        # when the run ends, before the next other op, so every op still sees the
        # ones before it. Their leases were checked by _check_path before any write.
        plain: list = []
        for op in items:
            if type(op) is tuple:
                plain.append(op)
                continue
            if plain:
                self._put_run(w, plain, parts, bare)
                plain = []
            which = op.WhichOneof("request")
            if which == "request_put":
                rev, body = self.put(w, op.request_put)
                num = 2
            elif which == "request_range":
                rev, body = self.range(w, op.request_range)
                num = 1
            elif which == "request_delete_range":
                rev, body = self.delete_range(w, op.request_delete_range)
                num = 3
            else:
                body, pos = self._apply_txn(w, path, pos)
                rev, num = None, 4
            if not body and rev is not None:
                part = bare.get((num, rev))
                if part is None:
                    part = bare[(num, rev)] = _op_response(num, rev, b"")
                parts.append(part)
            else:
                parts.append(_op_response(num, rev, body))
        if plain:
            self._put_run(w, plain, parts, bare)
        return b"".join(parts), pos

    @staticmethod
    def _put_run(w: WriteTxn, plain: list, parts: list, bare: dict) -> None:
        rev = w.put_plain(plain)
        part = bare.get((2, rev))
        if part is None:
            part = bare[(2, rev)] = _op_response(2, rev, b"")
        parts.extend([part] * len(plain))


_SUCCEEDED = wire.field_varint(2, 1)   # TxnResponse.succeeded = true


def _op_response(num: int, rev, body: bytes) -> bytes:
    """A TxnResponse's ResponseOp (field 3) holding response ``num``. Nested responses
    carry only their revision (a nested txn: an empty header)."""
    hdr = b"" if rev is None else wire.header(0, 0, rev, 0)
    return wire.field_bytes(3, wire.field_bytes(num, wire.with_header(hdr, body)))
