"""The connection sniffer's HTTP/1.x rule, ext/engine/connection.pxi h1_request_start
against its twin in kvcore/engine/py_front.py: the same answer for every first bytes,
and the cases that decide between HTTP/1.x, HTTP/2 and garbage."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcore import _ext
from kvcore.engine import py_front

C = _ext.compiled("grpc_engine").h1_request_start
P = py_front.h1_request_start


@pytest.mark.parametrize("first, h1", [
    (b"GET /health HTTP/1.1\r\n", True),
    (b"get /v2/keys/a HTTP/1.1\r\n", True),      # Go takes any token; etcd answers 405
    (b"GeT / HTTP/1.1\r\n", True),
    (b"M-SEARCH * HTTP/1.1\r\n", True),
    (b"g3t / HTTP/1.1\r\n", True),
    (b"po", True),                               # a start still waiting for its space
    (b"", False),
    (b" GET / HTTP/1.1\r\n", False),
    (b"G(T / HTTP/1.1\r\n", False),              # not a token byte
    (b"\x16\x03\x01\x02\x00\x01", False),        # a TLS ClientHello
    (b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", False),   # an HTTP/2 frame, no preface
    (b"AVERYLONGMETHODNAME / HTTP/1.1\r\n", False),     # no space in the first 16
    (b"ABCDEFGHIJKLMNOP", False),
])
def test_cases(first, h1):
    assert C(first) is h1
    assert P(first) is h1


@given(st.binary(max_size=40))
def test_any_bytes(data):
    assert C(data) == P(data)


@given(st.text("!#$%&'*+-.^_`|~azAZ09 \r\n(", max_size=24))
def test_token_like_text(text):
    data = text.encode()
    assert C(data) == P(data)
