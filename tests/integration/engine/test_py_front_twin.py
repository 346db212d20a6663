"""The grpcio engine's front (HTTP/1.x on the client port, HTTP/2 spliced to grpcio):
the native sniffer (ext/engine/http1.pxi) against its pure-Python twin
(kvcore/engine/py_front.py). Two real members serve with ``--grpc-engine grpcio``,
one compiled (native front), one with KVCORE_PURE_PYTHON=1 (pure front); both
advertise the same peer URL, so their member and cluster IDs, and with the same
requests in the same order their revisions, are the same: every raw answer must be
the same bytes."""
from __future__ import annotations

import base64
import json
import re
import socket
import ssl

import pytest

from tests import servers
from tests.tlscerts import make_pki

# Same member and cluster IDs on both sides: the ID comes from the advertised URL
# (nothing dials it in a one-member cluster).
SAME_ID = ("--initial-advertise-peer-urls", "http://127.0.0.1:2380",
           "--initial-cluster", "default=http://127.0.0.1:2380", "--grpc-engine", "grpcio")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def post(path: str, body: dict, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(data)}\r\n\r\n").encode() + data


def chunked_post(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    a, b = data[:7], data[7:]
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            f"{len(a):x}\r\n").encode() + a + f"\r\n{len(b):x};ext=1\r\n".encode() + b + \
        b"\r\n0\r\n\r\n"


class Conn:
    """A raw socket reading exactly what HTTP/1.1 framing says (a whole answer by
    content-length or chunks, or everything up to the server's close)."""

    def __init__(self, port: int, timeout: float = 20.0, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.buf = b""

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ssl.SSLEOFError:      # a TLS peer that closed without close_notify
            data = b""
        self.buf += data
        return bool(data)

    def _take_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before " + repr(sep))
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("closed early")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self) -> bytes:
        return self._take_until(b"\r\n\r\n")

    def chunk(self) -> bytes:
        line = self._take_until(b"\r\n")
        size = int(line.split(b";")[0], 16)
        return line + self._take(size + 2)

    def answer(self) -> bytes:
        head = self.head()
        low = head.lower()
        if b"transfer-encoding: chunked" in low:
            out = head
            while True:
                c = self.chunk()
                out += c
                if c == b"0\r\n\r\n":
                    return out
        n = int(low.split(b"content-length: ")[1].split(b"\r\n")[0])
        return head + self._take(n)

    def rest(self) -> bytes:
        """Everything until the server closes."""
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def close(self):
        self.sock.close()


def undated(answers: dict) -> dict:
    """The answers with Date's value blanked: the two servers answer a moment apart,
    maybe across a second (the header itself is compared: its name and place)."""
    return {k: re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: <date>", v) for k, v in answers.items()}


def exchange(port: int, raw: bytes, *, until_close: bool = False, tls=None) -> bytes:
    c = Conn(port, tls=tls)
    try:
        c.sock.sendall(raw)
        return c.rest() if until_close else c.answer()
    finally:
        c.close()


def script(port: int) -> dict:
    """The exchanges, in order; -> name -> raw answer."""
    out = {}
    out["health"] = exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    out["version"] = exchange(port, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    out["put"] = exchange(port, post("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")}))
    out["range"] = exchange(port, post("/v3/kv/range", {"key": b64("foo")}))
    out["chunked put"] = exchange(port, chunked_post(
        "/v3/kv/put", {"key": b64("chunked"), "value": b64("v" * 40)}))
    out["range chunked"] = exchange(port, post("/v3/kv/range", {"key": b64("chunked")}))
    # keep-alive: two requests on one connection, the second sent before the first
    # is answered (it waits in the front's buffer); then one ending with close.
    c = Conn(port)
    try:
        c.sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                       + post("/v3/kv/range", {"key": b64("foo")}))
        out["keep-alive"] = c.answer() + b"|" + c.answer()
        c.sock.sendall(post("/v3/kv/range", {"key": b64("foo")}, "Connection: close\r\n"))
        out["close"] = c.answer() + b"|" + c.rest()
    finally:
        c.close()
    # HTTP/1.0: answered, then closed; with keep-alive: kept open.
    out["http/1.0"] = exchange(port, b"GET /health HTTP/1.0\r\n\r\n", until_close=True)
    out["http/1.0 keep-alive"] = exchange(
        port, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    # A streaming answer: a watch, then two puts seen on it.
    w = Conn(port)
    try:
        w.sock.sendall(post("/v3/watch", {"create_request": {"key": b64("w")}}))
        got = w.head() + w.chunk()
        for i in range(2):
            out[f"put w {i}"] = exchange(port, post("/v3/kv/put", {"key": b64("w"),
                                                                   "value": b64(f"e{i}")}))
            got += w.chunk()
        out["watch"] = got
    finally:
        w.close()
    # Errors: a bad request line, not HTTP at all, a header block over 64 KiB, a
    # body over the cap, a bad content-length, a bad chunk size, an unknown path.
    out["bad line"] = exchange(port, b"GET /health\r\nHost: x\r\n\r\n", until_close=True)
    out["bad version"] = exchange(port, b"GET /health HTTP/2.0\r\n\r\n", until_close=True)
    out["not http"] = exchange(port, b"\x16\x03\x01\x00\x05hello\r\n\r\n", until_close=True)
    # any token is a method (Go's rule): the handler answers, 405 for /health
    out["lower-case method"] = exchange(port, b"get /health HTTP/1.1\r\nHost: x\r\n\r\n")
    out["odd method"] = exchange(port, b"M-SEARCH /v3/kv/range HTTP/1.1\r\n"
                                       b"Content-Length: 0\r\n\r\n")
    big = b"GET /health HTTP/1.1\r\nX: "     # and no end: one byte over 64 KiB
    out["big head"] = exchange(port, big + b"a" * (65537 - len(big)), until_close=True)
    out["big body"] = exchange(
        port, b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        until_close=True)
    out["bad length"] = exchange(
        port, b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: x\r\n\r\n", until_close=True)
    out["bad chunk"] = exchange(port, b"POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: "
                                b"chunked\r\n\r\nzz\r\n", until_close=True)
    out["unknown path"] = exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    out["bad json"] = exchange(port, post("/v3/kv/range", {"key": 5}))
    return out


@pytest.fixture(scope="module")
def twin_servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("front-twin")
    native = servers.start_kvcore(str(base / "native.etcd"), extra=SAME_ID,
                                  env_extra={"KVCORE_PURE_PYTHON": "0"})
    try:
        pure = servers.start_kvcore(str(base / "pure.etcd"), extra=SAME_ID,
                                    env_extra={"KVCORE_PURE_PYTHON": "1"})
    except BaseException:
        native.stop()
        raise
    yield native, pure
    native.stop()
    pure.stop()


@pytest.mark.native_engine
def test_the_fronts_answer_the_same_bytes(twin_servers):
    native, pure = twin_servers
    assert "pure-Python" not in native.log()
    want, got = undated(script(native.port)), undated(script(pure.port))
    assert list(want) == list(got)
    for name in want:
        assert got[name] == want[name], (
            f"{name}:\nnative {want[name][:600]!r}\npure   {got[name][:600]!r}")
    # Not vacuous: the answers are the ones each exchange is about.
    status = {name: a.split(b"\r\n", 1)[0].decode() for name, a in want.items()}
    assert status["health"] == "HTTP/1.1 200 OK" and b'"health":"true"' in want["health"]
    assert b"YmFy" in want["range"] and b"dnZ2dnZ2" in want["range chunked"]
    assert want["keep-alive"].count(b"HTTP/1.1 200 OK") == 2
    assert b"Connection: close" in want["close"] and want["close"].endswith(b"|")
    assert b"Connection: close" in want["http/1.0"]
    assert b"Connection: close" not in want["http/1.0 keep-alive"]
    assert b"Transfer-Encoding: chunked" in want["watch"] and b"ZTE=" in want["watch"]
    assert b"\r\nDate: <date>\r\nContent-Length: " in want["health"]
    for name in ("bad line", "bad version", "not http", "bad length", "bad chunk"):
        assert status[name] == "HTTP/1.1 400 Bad Request", name
    assert status["big head"] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert status["big body"] == "HTTP/1.1 429 Too Many Requests"
    assert b"received message larger than max (99999999 vs." in want["big body"]
    assert status["unknown path"].startswith("HTTP/1.1 404")


@pytest.mark.native_engine
def test_both_fronts_splice_grpc_to_grpcio(twin_servers):
    for srv in twin_servers:
        rc, out, err = srv.etcdctl("get", "foo", "-w", "json")
        assert rc == 0, err
        kvs = json.loads(out)["kvs"]
        assert [(base64.b64decode(k["key"]), base64.b64decode(k["value"])) for k in kvs] == [
            (b"foo", b"bar")]


@pytest.mark.native_engine
def test_pure_member_binds_the_port_once(twin_servers, tmp_path):
    """The core binds the client port (workers accept on it): a second member on the
    same port fails as etcd does, in pure-Python mode as in native mode."""
    _, pure = twin_servers
    with pytest.raises(RuntimeError) as e:
        servers.start_kvcore(str(tmp_path / "second.etcd"), port=pure.port,
                             env_extra={"KVCORE_PURE_PYTHON": "1"})
    assert f"listen tcp 127.0.0.1:{pure.port}: bind: address already in use" in str(e.value)


def tls_script(port: int, tls: ssl.SSLContext) -> dict:
    """Over TLS with a client certificate (ALPN http/1.1): the front ends TLS and the
    gateway sees it (--host-whitelist does not apply to TLS)."""
    out = {}
    out["health, other host"] = exchange(
        port, b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n", tls=tls)
    out["put"] = exchange(port, post("/v3/kv/put", {"key": b64("t"), "value": b64("tls")}),
                          tls=tls)
    out["chunked range"] = exchange(port, chunked_post("/v3/kv/range", {"key": b64("t")}),
                                    tls=tls)
    out["http/1.0"] = exchange(port, b"GET /health HTTP/1.0\r\n\r\n", until_close=True,
                               tls=tls)
    out["bad line"] = exchange(port, b"GET /\r\n\r\n", until_close=True, tls=tls)
    return out


@pytest.mark.native_engine
def test_the_fronts_answer_the_same_bytes_over_tls(tmp_path):
    pki = make_pki(str(tmp_path / "pki"))
    flags = SAME_ID + ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
                       "--client-cert-auth", "--trusted-ca-file", pki.ca,
                       "--host-whitelist", "127.0.0.1")
    ctl = ("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)
    started = []
    try:
        for name, pure in (("native", "0"), ("pure", "1")):
            started.append(servers.start_kvcore(
                str(tmp_path / f"{name}.etcd"), extra=flags, scheme="https", ctl_args=ctl,
                env_extra={"KVCORE_PURE_PYTHON": pure}))
        tls = ssl.create_default_context(cafile=pki.ca)
        tls.load_cert_chain(pki.client_cert, pki.client_key)
        tls.set_alpn_protocols(["http/1.1", "h2"])
        want, got = (undated(tls_script(srv.port, tls)) for srv in started)
        for name in want:
            assert got[name] == want[name], (
                f"{name}:\nnative {want[name][:600]!r}\npure   {got[name][:600]!r}")
        assert b'"health":"true"' in want["health, other host"]
        assert b"dGxz" in want["chunked range"]
        assert want["bad line"].startswith(b"HTTP/1.1 400 Bad Request\r\n")
        # gRPC over TLS (ALPN h2 only) still reaches grpcio, which checks the certificate
        for srv in started:
            rc, out, err = srv.etcdctl("get", "t", "--print-value-only")
            assert (rc, out.strip()) == (0, "tls"), err
    finally:
        for srv in started:
            srv.stop()
