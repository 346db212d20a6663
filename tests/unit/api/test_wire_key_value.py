"""wire.key_value against protobuf's own serialisation of mvccpb.KeyValue."""
from hypothesis import given
from hypothesis import strategies as st

from kvcore.api import kv_pb2, wire

i64 = st.integers(-2**63, 2**63 - 1)


@given(st.binary(max_size=40), i64, i64, i64, st.binary(max_size=300), i64)
def test_key_value_is_protobufs_bytes(key, create, mod, version, value, lease):
    pb = kv_pb2.KeyValue(key=key, create_revision=create, mod_revision=mod,
                         version=version, value=value, lease=lease)
    got = wire.key_value(key, create, mod, version, value, lease)
    assert got == pb.SerializeToString()
    assert kv_pb2.KeyValue.FromString(got) == pb


def test_key_value_large_value():
    value = bytes(range(256)) * 4096
    pb = kv_pb2.KeyValue(key=b"big/1", create_revision=3, mod_revision=9, version=2,
                         value=value, lease=7587)
    assert wire.key_value(b"big/1", 3, 9, 2, value, 7587) == pb.SerializeToString()
