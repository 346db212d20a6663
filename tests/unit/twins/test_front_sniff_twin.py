"""The connection sniffer's HTTP/1.x rule, ext/engine/connection.pxi h1_request_start
against its twin in kvcore/engine/py_front.py: the same answer for every first bytes,
and the cases that decide between HTTP/1.x, HTTP/2 and garbage. Then the request
target Go's server refuses (ext/engine/http1.pxi go_bad_target and its twin)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcore import _ext
from kvcore.engine import py_front

ENGINE = _ext.compiled("grpc_engine")
C = ENGINE.h1_request_start
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


@pytest.mark.parametrize("target, bad", [
    ("/v2/keys/a", False), ("/v2/keys/a%20b", False), ("/v2/keys/%E2%82%AC", False),
    ("/v2/keys/a?value=%zz", False),       # the query is not checked here
    ("/v2/keys/%zz", True), ("/v2/keys/%", True), ("/v2/keys/%2", True),
    ("/v2/keys/%2g?x", True), ("/a\x01b", True), ("/a?x=\x7f", True), ("*", False),
])
def test_bad_target_cases(target, bad):
    assert ENGINE.go_bad_target(target) is bad
    assert py_front.go_bad_target(target) is bad
    assert ENGINE.GO_BAD_REQUEST == py_front.GO_BAD_REQUEST


@given(st.text(st.sampled_from("/%?aF0gz\x01\x7f\u00e9"), max_size=12))
def test_bad_target_any(target):
    assert ENGINE.go_bad_target(target) == py_front.go_bad_target(target)
