"""Pins the compiled engine's small codecs against plain-Python twins."""
from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

# the compiled engine has no twin: pure-Python mode deselects these (tests/conftest.py)
pytestmark = pytest.mark.native_engine


def py_percent_encode(message: str) -> bytes:
    """gRPC's grpc-message rule: bytes 0x20-0x7E except '%' as is, else %XX."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else "%%%02X" % b
                   for b in message.encode()).encode()


def py_parse_timeout(value: bytes):
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    v = value.decode("latin-1")
    if not 2 <= len(v) <= 9 or v[-1] not in units or not v[:-1].isdigit():
        return None
    return int(v[:-1]) * units[v[-1]]


@pytest.mark.parametrize("msg", ["", "plain", "100%", "ünïcode ✓", "a\nb\tc", "%%%", "\x7f\x00"])
def test_percent_encode_matches_twin_and_decodes_back(msg):
    from kvcore._ext.grpc_engine import percent_encode
    enc = percent_encode(msg)
    assert enc == py_percent_encode(msg)
    assert urllib.parse.unquote(enc.decode()) == msg


@pytest.mark.parametrize("value", [b"1S", b"100m", b"5H", b"99999999n", b"3M", b"250u",
                                   b"", b"S", b"10", b"10x", b"123456789S", b"-1S", b"1.5S"])
def test_parse_timeout_matches_twin(value):
    from kvcore._ext.grpc_engine import parse_timeout
    assert parse_timeout(value) == py_parse_timeout(value)


def test_links_a_libnghttp2_with_the_security_limits():
    from kvcore._ext.grpc_engine import libnghttp2_version
    major, minor, _ = (int(x) for x in libnghttp2_version().split(".")[:3])
    assert (major, minor) >= (1, 52)


def test_native_engine_is_built_in_ci():
    """The build treats the engine as optional (grpcio fallback); CI must not."""
    import os

    from kvcore.engine import native
    if os.environ.get("CI") == "true":
        assert native.available(), f"native engine missing in CI: {native.IMPORT_ERROR}"


@given(st.text(max_size=40))
def test_percent_encode_property(msg):
    from kvcore._ext.grpc_engine import percent_encode
    assert percent_encode(msg) == py_percent_encode(msg)


@given(st.one_of(st.text(st.characters(max_codepoint=127), max_size=11).map(str.encode),
                 st.builds(lambda n, u: b"%d%s" % (n, u), st.integers(0, 10**10),
                           st.sampled_from([b"H", b"M", b"S", b"m", b"u", b"n", b"x"]))))
def test_parse_timeout_property(value):
    from kvcore._ext.grpc_engine import parse_timeout
    assert parse_timeout(value) == py_parse_timeout(value)
