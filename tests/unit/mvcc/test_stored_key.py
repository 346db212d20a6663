"""Restart reads each stored KeyValue's key straight off its front (store._stored_key);
it must be what protobuf parses, for every key length and any other fields."""
from hypothesis import given, settings, strategies as st

from kvcore.api import kv_pb2, wire
from kvcore.mvcc.store import _stored_key


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=20000), value=st.binary(max_size=300),
       rev=st.integers(0, 2**62), ver=st.integers(0, 2**40), lease=st.integers(0, 2**62))
def test_stored_key_is_protobufs(key, value, rev, ver, lease):
    kv = kv_pb2.KeyValue(key=key, value=value, create_revision=rev, mod_revision=rev,
                         version=ver, lease=lease)
    raw = kv.SerializeToString()
    assert _stored_key(raw) == key


def test_stored_key_of_hand_built_key_value():
    raw = wire.key_value(b"a" * 300, 7, 9, 2, b"v", 0)
    assert _stored_key(raw) == b"a" * 300
