"""The HTTP/1.1 response head on the client port, as etcd 3.5.1 (Go's net/http) writes
it: the handler's headers, then Date, Content-Length or Transfer-Encoding, and
Connection: close, with Go's spelling. Names and order are compared; Date's value
only for its format.

Left as they are (docs/decisions.md, "Real clients: Patroni and vip-manager"): an
HTTP/1.0 request gets "HTTP/1.0" and a sniffed Content-Type last from Go; /metrics
goes chunked from Go past its 4 KiB buffer.
"""
import re
import socket
from email.utils import parsedate_to_datetime

import pytest

from tests import etcd351, servers

REQUESTS = {
    "get": b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
    "post, close": b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Content-Length: 14\r\n\r\n{\"key\":\"YQ==\"}",
    "not found": b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad json": b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
    "stream": b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: 34\r\n\r\n"
              b"{\"create_request\":{\"key\":\"YQ==\"}}\n",
}


def _head(port: int, request: bytes) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")


def _shape(lines: list[str]) -> list[str]:
    """The status line and header names in order; Date's value checked for Go's
    format (http.TimeFormat), Content-Length's left out (ids differ in length)."""
    out = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        if name == "Date":
            assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", value), value
            assert parsedate_to_datetime(value).tzinfo is not None
        out.append(name if name in ("Date", "Content-Length") else line)
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("headers")
    kv = servers.start_kvcore(str(base / "kv.etcd"))
    et = servers.start_etcd(str(base / "etcd.etcd"), binary=etcd351.ETCD)
    yield kv, et
    kv.stop()
    et.stop()


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_response_head_as_etcd(pair, name):
    kv, et = pair
    assert _shape(_head(kv.port, REQUESTS[name])) == _shape(_head(et.port, REQUESTS[name]))
