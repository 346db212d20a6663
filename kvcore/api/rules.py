"""etcd's request checks (v3rpc/key.go) and the request facts the server branches
on (read-only Txn, serializable Txn, Txn that puts). Pure functions of a decoded
request, shared by the workers, which check every client call where they decode
it (kvcore/worker/edge.py), and the core.

Each ``check_*`` raises the etcd error the client must see (kvcore/api/errors.py).
"""
from __future__ import annotations

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error

RR = rpc_pb2.RangeRequest
_SORT_ORDERS = frozenset(RR.SortOrder.values())
_SORT_TARGETS = frozenset(RR.SortTarget.values())


def check_range(r: rpc_pb2.RangeRequest) -> None:
    if not r.key:
        raise etcd_error(EtcdError.EMPTY_KEY)
    if r.sort_order not in _SORT_ORDERS or r.sort_target not in _SORT_TARGETS:
        raise etcd_error(EtcdError.INVALID_SORT)


def check_put(r: rpc_pb2.PutRequest) -> None:
    if not r.key:
        raise etcd_error(EtcdError.EMPTY_KEY)
    if r.ignore_value and r.value:
        raise etcd_error(EtcdError.VALUE_PROVIDED)
    if r.ignore_lease and r.lease:
        raise etcd_error(EtcdError.LEASE_PROVIDED)


def check_delete(r: rpc_pb2.DeleteRangeRequest) -> None:
    if not r.key:
        raise etcd_error(EtcdError.EMPTY_KEY)


def check_txn(r: rpc_pb2.TxnRequest, max_ops: int) -> None:
    """etcd's checkTxnRequest, then checkIntervals of each branch (v3rpc key.go's
    order: a request with a bad op and a duplicate key is refused for the bad op).
    Each level's ops are walked once for both: the workers check every Txn."""
    then, other = _walk_txn(r, max_ops, True)
    _intervals(then)
    _intervals(other)


def _walk_txn(r: rpc_pb2.TxnRequest, max_ops: int, check: bool) -> tuple:
    if check:
        opc = max(len(r.compare), len(r.success), len(r.failure))
        if opc > max_ops:
            raise etcd_error(EtcdError.TOO_MANY_OPS)
        for c in r.compare:
            if not c.key:
                raise etcd_error(EtcdError.EMPTY_KEY)
        max_ops -= opc
    return _walk_ops(r.success, max_ops, check), _walk_ops(r.failure, max_ops, check)


def _walk_ops(ops, max_ops: int, check: bool) -> tuple:
    """One level of a txn's ops, checked in order (etcd's checkRequestOp) when
    ``check``, and collected for checkIntervals -> (put keys, _Dels, nested txns'
    (success, failure) levels)."""
    keys: list = []
    dels = _Dels()
    nested: list = []
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_put":
            p = op.request_put
            if check:
                check_put(p)
            keys.append(p.key)
        elif which == "request_range":
            if check:
                check_range(op.request_range)
        elif which == "request_delete_range":
            d = op.request_delete_range
            if check:
                check_delete(d)
            dels.add(d.key, d.range_end)
        elif which == "request_txn":
            nested.append(_walk_txn(op.request_txn, max_ops, check))
        elif check:
            raise etcd_error(EtcdError.KEY_NOT_FOUND)
    return keys, dels, nested


class _Dels:
    """Delete intervals of one txn level: [key, end), or a point.

    As in etcd 3.5's checkIntervals, ``range_end`` is taken literally: "\\0" (every
    key >= key, for the delete itself) makes the interval [key, "\\0"), which holds
    no key, so a put of a key that such a delete removes is not a duplicate (etcd
    3.5.1 applies that txn; tests/compat/test_txn_etcd.py)."""

    def __init__(self):
        self.ivs: list[tuple[bytes, bytes]] = []

    def add(self, key: bytes, end: bytes) -> None:
        self.ivs.append((key, end or key + b"\x00"))

    def hits(self, k: bytes) -> bool:
        for lo, hi in self.ivs:
            if lo <= k < hi:
                return True
        return False


def _intervals(level: tuple) -> tuple[set, _Dels]:
    """etcd's checkIntervals over one walked level (_walk_ops): no key may be put
    twice, or put and deleted, in one txn path; success and failure branches of a
    nested txn may overlap. -> (keys put, delete intervals) of the level. Every
    violation is the same error, so the order of the checks does not show."""
    keys, dels, nested = level
    puts: set = set()
    for then, other in nested:
        puts_then, dels_then = _intervals(then)
        puts_else, dels_else = _intervals(other)
        for k in puts_then:
            if k in puts or dels.hits(k):
                raise etcd_error(EtcdError.DUPLICATE_KEY)
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or dels.hits(k):
                raise etcd_error(EtcdError.DUPLICATE_KEY)
            puts.add(k)
        dels.ivs.extend(dels_then.ivs)
        dels.ivs.extend(dels_else.ivs)
    if not dels.ivs:   # puts only: a duplicate shows as a smaller set
        n = len(puts)
        puts.update(keys)
        if len(puts) != n + len(keys):
            raise etcd_error(EtcdError.DUPLICATE_KEY)
        return puts, dels
    for k in keys:
        if k in puts or dels.hits(k):
            raise etcd_error(EtcdError.DUPLICATE_KEY)
        puts.add(k)
    return puts, dels


def is_txn_readonly(r: rpc_pb2.TxnRequest) -> bool:
    for ops in (r.success, r.failure):
        for op in ops:
            w = op.WhichOneof("request")
            if w in ("request_put", "request_delete_range"):
                return False
            if w == "request_txn" and not is_txn_readonly(op.request_txn):
                return False
    return True


def is_txn_serializable(r: rpc_pb2.TxnRequest) -> bool:
    """A read-only txn whose every range is serializable needs no ReadIndex."""
    for ops in (r.success, r.failure):
        for op in ops:
            w = op.WhichOneof("request")
            if w == "request_range" and not op.request_range.serializable:
                return False
            if w == "request_txn" and not is_txn_serializable(op.request_txn):
                return False
    return True


def txn_puts(r: rpc_pb2.TxnRequest) -> bool:
    """Whether a Txn would write a value in either branch (etcd's txn cost > 0)."""
    for op in list(r.success) + list(r.failure):
        if op.HasField("request_put"):
            return True
        if op.HasField("request_txn") and txn_puts(op.request_txn):
            return True
    return False


def txn_shape(r: rpc_pb2.TxnRequest) -> tuple[bool, bool, bool]:
    """(read-only, serializable, puts) of a Txn in one walk that stops at the first
    put: what the core needs to route a Txn. ``serializable`` (is_txn_serializable)
    is only given for a read-only Txn (False otherwise); the others are
    is_txn_readonly and txn_puts."""
    readonly = serializable = True
    for ops in (r.success, r.failure):
        for op in ops:
            w = op.WhichOneof("request")
            if w == "request_put":
                return False, False, True
            if w == "request_range":
                if not op.request_range.serializable:
                    serializable = False
            elif w == "request_delete_range":
                readonly = False
            elif w == "request_txn":
                ro, ser, puts = txn_shape(op.request_txn)
                if puts:
                    return False, False, True
                readonly = readonly and ro
                serializable = serializable and ser
    return readonly, serializable and readonly, False
