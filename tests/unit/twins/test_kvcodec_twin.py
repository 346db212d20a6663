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
