"""Requests for the differential fuzzer of the v3 API: hypothesis strategies that draw
one gRPC call at a time (method name and request message), valid in form but hostile
in content: empty, binary and long keys (over LMDB's 511 bytes), every range_end form,
revisions past, future and compacted, leases that exist or not, nested and duplicate
txns, and more operations than --max-txn-ops.

Revisions are drawn as markers resolved against a ``Ctx`` (the oracle's current and
compacted revision) just before sending, so that they land near the interesting edges
rather than anywhere in int64. Every request is sent unchanged to both servers.
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from kvcore.api import rpc_pb2

LONG = b"L" * 600                      # past LMDB's 511-byte key limit
KEYS = [b"a", b"ab", b"b", b"k/1", b"k/2", b"\x00", b"\x00\x00", b"\xff", b"\xff\xff",
        b"\x01\xfe\x80", LONG, LONG + b"\x01", LONG + b"\xff"]
# Leases granted with a long TTL so that none expires during a run (an expiry would
# delete keys at a moment that differs between the two servers).
LEASES = [1, 2, 0x7FFFFFFFFFFFFFFF, -7]
CYCLE_LEASES = [0, 99, -99]           # granted, used and revoked within one step
EXPLICIT_LEASES = set(LEASES) | set(CYCLE_LEASES) | {12345}
MAX_LEASE_TTL = 9_000_000_000          # etcd's lease.MaxLeaseTTL
MAX_TXN_OPS = 128                      # the default --max-txn-ops of both servers


@dataclass
class Ctx:
    rev: int = 1          # the oracle's current revision
    compact: int = 0      # the oracle's compacted revision


def prefix_end(key: bytes) -> bytes:
    """etcd's clientv3.GetPrefixRangeEnd."""
    k = bytearray(key)
    for i in range(len(k) - 1, -1, -1):
        if k[i] < 0xFF:
            k[i] += 1
            return bytes(k[:i + 1])
    return b"\x00"


keys = st.one_of(st.sampled_from(KEYS), st.binary(min_size=1, max_size=6))
values = st.one_of(st.binary(max_size=12), st.just(b"V" * 3000))


def key_and_end(with_empty: bool = False):
    """(key, range_end) in every form: single key, "\\0" (from key on), the prefix
    end, another key (possibly before key: an empty or invalid range), key itself."""
    key = st.one_of(keys, st.just(b"")) if with_empty else keys

    @st.composite
    def pair(draw):
        k = draw(key)
        end = draw(st.one_of(st.just(b""), st.just(b"\x00"), st.just(prefix_end(k)),
                             keys, st.just(k)))
        return k, end
    return pair()


# Revisions relative to the oracle's state are drawn as markers (hypothesis needs
# strategies that do not depend on outside state) and resolved just before sending.
MARK = 1 << 60
_RELATIVE = [lambda c: c.rev, lambda c: c.rev + 1, lambda c: max(c.rev - 1, 1),
             lambda c: c.compact, lambda c: c.compact + 1, lambda c: max(c.compact - 1, 0),
             lambda c: (c.compact + c.rev) // 2, lambda c: c.rev + 100]


def revision():
    """Around the edges: 0 (latest), the current, a little past and future, the
    compacted one and just after, and a few absurd values."""
    return st.one_of(st.sampled_from([MARK + i for i in range(len(_RELATIVE))]),
                     st.sampled_from([0, 1, 2, -1, 1 << 62]))


def resolve(msg, ctx: Ctx):
    """A copy of ``msg`` with every revision marker replaced by its value now."""
    out = type(msg)()
    out.CopyFrom(msg)
    _resolve(out, ctx)
    return out


def _resolve(msg, ctx):
    for field, value in msg.ListFields():
        if field.message_type is not None:
            for v in (value if hasattr(value, "add") else [value]):
                _resolve(v, ctx)
        elif isinstance(value, int) and MARK <= value < MARK + len(_RELATIVE):
            setattr(msg, field.name, _RELATIVE[value - MARK](ctx))


def lease_id():
    return st.one_of(st.just(0), st.sampled_from(LEASES), st.just(12345))


def put(nested: bool = False):
    return st.builds(
        rpc_pb2.PutRequest,
        key=st.one_of(keys, st.just(b"")) if not nested else keys,
        value=values, lease=lease_id(), prev_kv=st.booleans(),
        ignore_value=st.booleans(), ignore_lease=st.booleans())


@st.composite
def range_req(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.RangeRequest(
        key=key, range_end=end,
        limit=draw(st.sampled_from([0, 0, 1, 2, -1])),
        revision=draw(revision()),
        sort_order=draw(st.sampled_from([0, 0, 1, 2])),
        sort_target=draw(st.sampled_from([0, 0, 1, 2, 3, 4])),
        serializable=draw(st.booleans()),
        keys_only=draw(st.booleans()), count_only=draw(st.booleans()),
        min_mod_revision=draw(st.sampled_from([0, 0, 1, MARK])),
        max_mod_revision=draw(st.sampled_from([0, 0, 1, MARK])),
        min_create_revision=draw(st.sampled_from([0, 0, 2, MARK + 2])),
        max_create_revision=draw(st.sampled_from([0, 0, 2, MARK + 2])))


@st.composite
def delete_req(draw):
    key, end = draw(key_and_end(with_empty=True))
    return rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=draw(st.booleans()))


@st.composite
def compare(draw):
    key, end = draw(st.one_of(keys.map(lambda k: (k, b"")), key_and_end()))
    target = draw(st.sampled_from([0, 1, 2, 3, 4]))
    c = rpc_pb2.Compare(key=key, range_end=end, target=target,
                        result=draw(st.sampled_from([0, 1, 2, 3])))
    n = draw(st.sampled_from([0, 1, 2, MARK, MARK + 2, -1]))
    if target == rpc_pb2.Compare.VERSION:
        c.version = n
    elif target == rpc_pb2.Compare.CREATE:
        c.create_revision = n
    elif target == rpc_pb2.Compare.MOD:
        c.mod_revision = n
    elif target == rpc_pb2.Compare.VALUE:
        c.value = draw(values)
    else:
        c.lease = draw(lease_id())
    return c


def request_op(depth: int):
    ops = [put(nested=True).map(lambda r: rpc_pb2.RequestOp(request_put=r)),
           range_req().map(lambda r: rpc_pb2.RequestOp(request_range=r)),
           delete_req().map(lambda r: rpc_pb2.RequestOp(request_delete_range=r))]
    if depth < 2:
        ops.append(txn(depth + 1).map(lambda r: rpc_pb2.RequestOp(request_txn=r)))
    return st.one_of(*ops)


@st.composite
def txn(draw, depth: int = 0):
    return rpc_pb2.TxnRequest(
        compare=draw(st.lists(compare(), max_size=3)),
        success=draw(st.lists(request_op(depth), max_size=4)),
        failure=draw(st.lists(request_op(depth), max_size=3)))


@st.composite
def big_txn(draw):
    """At or just over --max-txn-ops, of distinct keys."""
    n = draw(st.sampled_from([MAX_TXN_OPS, MAX_TXN_OPS + 1]))
    return rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t/%03d" % i, value=b"x"))
        for i in range(n)])


@st.composite
def dup_txn(draw):
    """The same key written twice in one txn: two puts, a put under a delete's
    range, at one level or across nested levels, or in the two branches (allowed)."""
    key = draw(keys)
    p = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"d"))
    d = rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
        key=key, range_end=draw(st.sampled_from([b"", prefix_end(key), b"\x00"]))))
    second = draw(st.sampled_from([p, d]))
    shape = draw(st.sampled_from(["flat", "nested", "branches"]))
    if shape == "flat":
        return rpc_pb2.TxnRequest(success=[p, second])
    if shape == "nested":
        inner = rpc_pb2.TxnRequest(success=[second])
        return rpc_pb2.TxnRequest(success=[p, rpc_pb2.RequestOp(request_txn=inner)])
    return rpc_pb2.TxnRequest(compare=draw(st.lists(compare(), max_size=1)),
                              success=[p], failure=[second])


# Around etcd's --max-request-bytes (1.5 MiB by default): taken, or refused whole.
BIG_VALUES = [1 << 20, 1_572_864 - 200, 1_572_864 + 10]


def compact():
    return st.builds(rpc_pb2.CompactionRequest, revision=revision(),
                     physical=st.booleans())


def lease_grant():
    """Only into the long-lived pool (see LEASES); short and odd TTLs go through
    ``LeaseCycle``."""
    return st.builds(rpc_pb2.LeaseGrantRequest, ID=st.sampled_from(LEASES),
                     TTL=st.sampled_from([3600, 86400, MAX_LEASE_TTL]))


@dataclass
class LeaseCycle:
    """Grant with an odd TTL (and ID 0: the server picks it), attach keys, ask its
    time-to-live, revoke, all in one step so no lease outlives it."""
    ID: int
    TTL: int
    keys: list


lease_cycle = st.builds(
    LeaseCycle, ID=st.sampled_from(CYCLE_LEASES),
    TTL=st.sampled_from([-10, 0, 1, 2, 5, MAX_LEASE_TTL, MAX_LEASE_TTL + 1, 1 << 62]),
    keys=st.lists(keys, max_size=2))


@st.composite
def watch_create(draw):
    key, end = draw(key_and_end())
    return rpc_pb2.WatchCreateRequest(
        key=key, range_end=end, start_revision=draw(revision()),
        filters=draw(st.lists(st.sampled_from([0, 1]), max_size=2)),
        prev_kv=draw(st.booleans()), fragment=draw(st.booleans()),
        progress_notify=draw(st.booleans()), watch_id=draw(st.sampled_from([0, 0, 7])))


def step():
    """One call: (method, request)."""
    return st.one_of(
        put().map(lambda r: ("Put", r)),
        range_req().map(lambda r: ("Range", r)),
        delete_req().map(lambda r: ("DeleteRange", r)),
        txn().map(lambda r: ("Txn", r)),
        big_txn().map(lambda r: ("Txn", r)),
        dup_txn().map(lambda r: ("Txn", r)),
        st.sampled_from(BIG_VALUES).map(lambda n: ("BigPut", n)),
        compact().map(lambda r: ("Compact", r)),
        lease_grant().map(lambda r: ("LeaseGrant", r)),
        st.builds(rpc_pb2.LeaseRevokeRequest, ID=lease_id()).map(lambda r: ("LeaseRevoke", r)),
        st.builds(rpc_pb2.LeaseTimeToLiveRequest, ID=lease_id(), keys=st.booleans()).map(
            lambda r: ("LeaseTimeToLive", r)),
        lease_cycle.map(lambda r: ("LeaseCycle", r)),
        watch_create().map(lambda r: ("Watch", r)),
    )
