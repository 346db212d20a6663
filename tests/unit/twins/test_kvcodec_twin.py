"""ext/kvcodec.pyx against its twin kvcore/api/kvcodec_py.py, and both against
protobuf's own serialisation of mvccpb.KeyValue (tests/unit/api/test_wire_key_value.py
checks the one wire.key_value picks)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcore import _ext
from kvcore.api import kv_pb2

C = _ext.compiled("kvcodec")
P = _ext.twin("kvcodec")

i64 = st.integers(-2**63, 2**63 - 1)


@given(st.binary(max_size=200), i64, i64, i64, st.binary(max_size=300), i64)
def test_key_value_is_protobufs_bytes(key, create, mod, version, value, lease):
    want = kv_pb2.KeyValue(key=key, create_revision=create, mod_revision=mod,
                           version=version, value=value, lease=lease).SerializeToString()
    assert C.key_value(key, create, mod, version, value, lease) == want
    assert P.key_value(key, create, mod, version, value, lease) == want


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, 1 << 20])
def test_key_value_length_prefixes(n):
    # the lengths where a varint length prefix grows by a byte
    key, value = b"k" * (n % 300), bytes(range(256)) * (n // 256) + b"v" * (n % 256)
    want = kv_pb2.KeyValue(key=key, create_revision=1, mod_revision=2, version=3,
                           value=value, lease=-1).SerializeToString()
    assert C.key_value(key, 1, 2, 3, value, -1) == P.key_value(key, 1, 2, 3, value, -1) == want


def test_key_value_refuses_what_is_not_bytes():
    for mod in (C, P):
        with pytest.raises(TypeError):
            mod.key_value("k", 1, 1, 1, b"v", 0)


kv_msgs = st.builds(kv_pb2.KeyValue, key=st.binary(max_size=40), mod_revision=i64,
                    value=st.binary(max_size=400), lease=i64)


@given(st.lists(kv_msgs, max_size=12), st.booleans(), st.integers(0, 2**63 - 1),
       st.integers(0, 2**64 - 1), i64)
def test_range_response_is_protobufs_bytes(kvs, more, count, member, rev):
    from kvcore.api import rpc_pb2
    hdr = rpc_pb2.ResponseHeader(member_id=member, revision=rev)
    want = rpc_pb2.RangeResponse(header=hdr, kvs=kvs, more=more, count=count)
    stored = [kv.SerializeToString() for kv in kvs]
    for mod in (C, P):
        assert mod.range_response(hdr.SerializeToString(), stored, more, count) == \
            want.SerializeToString()


def test_range_response_large_values_and_refusals():
    big = [b"k" * n for n in (127, 128, 16383, 16384, 1 << 20)]
    assert C.range_response(b"h", big, True, 5) == P.range_response(b"h", big, True, 5)
    for mod in (C, P):
        for bad in ([None], ["s"], [bytearray(b"x")]):
            with pytest.raises(TypeError):
                mod.range_response(b"", bad, False, 0)


class _Index:
    """Records the put_version calls; answers a made-up (create, version) per key."""
    def __init__(self):
        self.calls = []

    def put_version(self, key, main, sub):
        self.calls.append((key, main, sub))
        return (len(key) + 1, main - sub)


def _change(*fields):
    return fields


@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=60), i64), max_size=20),
       st.integers(1, 2**63 - 1), st.integers(0, 2**20))
def test_put_rows_twins_agree(puts, rev, sub):
    got = []
    for mod in (C, P):
        idx = _Index()
        got.append((mod.put_rows(idx.put_version, puts, rev, sub, _change, 7), idx.calls))
    (rows, latest, changes), calls = got[0]
    assert got[0] == got[1]
    assert calls == [(k, rev, sub + i) for i, (k, _, _) in enumerate(puts)]
    for i, (k, v, lease) in enumerate(puts):
        rk = rev.to_bytes(8, "big") + (sub + i).to_bytes(8, "big")
        kv = P.key_value(k, len(k) + 1, rev, rev - sub - i, v, lease)
        assert rows[i] == (rk, kv) and latest[i] == (k, rk)
        assert changes[i] == (7, k, kv, None, lease)


def test_put_rows_refuses_what_is_not_bytes():
    for mod in (C, P):
        with pytest.raises(TypeError):
            mod.put_rows(_Index().put_version, [(None, b"v", 0)], 2, 0, _change, 0)
        with pytest.raises(TypeError):
            mod.put_rows(_Index().put_version, [(b"k", "v", 0)], 2, 0, _change, 0)


from kvcore.api import rpc_pb2  # noqa: E402

_put = st.builds(lambda k, v, l, flags: rpc_pb2.PutRequest(
    key=k, value=v, lease=l, prev_kv=flags == 1, ignore_value=flags == 2, ignore_lease=flags == 3),
    st.binary(max_size=30), st.binary(max_size=40), i64, st.sampled_from([0, 0, 0, 1, 2, 3]))
_op = st.one_of(_put.map(lambda p: rpc_pb2.RequestOp(request_put=p)),
                st.binary(max_size=10).map(lambda k: rpc_pb2.RequestOp(
                    request_range=rpc_pb2.RangeRequest(key=k))))


@given(st.lists(_op, max_size=8), st.lists(_op, max_size=2), st.booleans())
def test_txn_plain_puts_is_protobufs_reading(success, failure, compare):
    r = rpc_pb2.TxnRequest(success=success, failure=failure, compare=[
        rpc_pb2.Compare(key=b"c")] if compare else [])
    data = r.SerializeToString()
    plain = (not compare and not failure and success and all(
        op.WhichOneof("request") == "request_put" and not (
            op.request_put.prev_kv or op.request_put.ignore_value or
            op.request_put.ignore_lease) for op in success))
    want = [(op.request_put.key, op.request_put.value, op.request_put.lease)
            for op in success] if plain else None
    assert C.txn_plain_puts(data) == P.txn_plain_puts(data) == want


@given(st.binary(max_size=60))
def test_txn_plain_puts_of_any_bytes(data):
    # Whatever it accepts, protobuf reads the same way; the twins agree.
    got = C.txn_plain_puts(data)
    assert got == P.txn_plain_puts(data)
    if got is not None:
        r = rpc_pb2.TxnRequest.FromString(data)
        assert not r.compare and not r.failure
        assert [(op.request_put.key, op.request_put.value, op.request_put.lease)
                for op in r.success] == got


def test_txn_plain_puts_refuses_a_field_twice():
    one = rpc_pb2.PutRequest(key=b"k", value=b"v", lease=5).SerializeToString()
    for dup in (one + b"\x0a\x01x", one + b"\x12\x01y", one + b"\x18\x07"):
        op = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest.FromString(dup))
        data = b"\x12" + bytes([len(dup) + 2]) + b"\x12" + bytes([len(dup)]) + dup
        assert C.txn_plain_puts(data) is None and P.txn_plain_puts(data) is None
        assert op.request_put.key in (b"k", b"x")   # protobuf: the last one wins
