"""TLS on the client URL: the real etcdctl, a grpcio client and curl against kvcore
(both engines) and Debian's etcd 3.4.23 started with the same certificates.

etcdctl's flags decide the transport: --cacert/--cert/--key (or
--insecure-transport=false) make it speak TLS, --insecure-skip-tls-verify skips the
server check; with no TLS flag it speaks plain HTTP/2 even to an https:// endpoint.
Each scenario runs against kvcore and etcd; exit code, output and etcdctl's error
line must agree. Where kvcore refuses a connection, its log must say so, so a
failure is the TLS refusal and not, say, a slow start.
"""
import json
import subprocess
import threading
import time

import grpc
import pytest
from cryptography import x509

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers
from tests.tlscerts import make_pki

FAIL_FAST = ("--dial-timeout=2s", "--command-timeout=3s")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def server_flags(pki, mode: str) -> tuple:
    """kvcore and etcd take the same flags."""
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    if mode in ("mtls", "crl"):
        flags += ("--client-cert-auth", "--trusted-ca-file", pki.ca)
    if mode == "ca-only":
        flags += ("--trusted-ca-file", pki.ca)
    if mode == "crl":
        flags += ("--client-crl-file", pki.crl)
    return flags


def _start_kv(tmp_path_factory, pki, mode, engine, workers=2):
    d = tmp_path_factory.mktemp(f"tls-{mode}-{engine}")
    return servers.start_kvcore(str(d / "kv.etcd"), workers=workers, scheme="https",
                                extra=("--grpc-engine", engine, *server_flags(pki, mode)))


def _start_etcd(tmp_path_factory, pki, mode):
    d = tmp_path_factory.mktemp(f"tls-{mode}-etcd")
    return servers.start_etcd(str(d / "etcd.etcd"), scheme="https",
                              extra=server_flags(pki, mode))


@pytest.fixture(scope="module", params=["grpcio", pytest.param("native", marks=pytest.mark.native_engine)])
def engine(request):
    return request.param


@pytest.fixture(scope="module")
def etcd_tls(tmp_path_factory, pki):
    et = _start_etcd(tmp_path_factory, pki, "tls")
    yield et
    et.stop()


@pytest.fixture(scope="module")
def etcd_mtls(tmp_path_factory, pki):
    et = _start_etcd(tmp_path_factory, pki, "mtls")
    yield et
    et.stop()


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory, pki, engine, etcd_tls):
    kv = _start_kv(tmp_path_factory, pki, "tls", engine)
    yield kv, etcd_tls
    kv.stop()


@pytest.fixture(scope="module")
def mtls_pair(tmp_path_factory, pki, engine, etcd_mtls):
    kv = _start_kv(tmp_path_factory, pki, "mtls", engine)
    yield kv, etcd_mtls
    kv.stop()


def _ca(p):
    return ("--cacert", p.ca)


def _client(p):
    return ("--cacert", p.ca, "--cert", p.client_cert, "--key", p.client_key)


# name -> (etcdctl TLS flags, succeeds?)
TLS_SCENARIOS = {
    "cacert": (_ca, True),
    "skip-verify": (lambda p: ("--insecure-transport=false", "--insecure-skip-tls-verify"),
                    True),
    "cacert-and-client-cert": (_client, True),
    "wrong-ca": (lambda p: ("--cacert", p.other_ca), False),
    "no-tls-flags": (lambda p: (), False),
}
MTLS_SCENARIOS = {
    "client-cert": (_client, True),
    "skip-verify-with-client-cert": (
        lambda p: ("--insecure-transport=false", "--insecure-skip-tls-verify",
                   "--cert", p.client_cert, "--key", p.client_key), True),
    "no-client-cert": (_ca, False),
    "client-cert-of-other-ca": (
        lambda p: ("--cacert", p.ca, "--cert", p.other_client_cert,
                   "--key", p.other_client_key), False),
    "wrong-ca": (lambda p: ("--cacert", p.other_ca, "--cert", p.client_cert,
                            "--key", p.client_key), False),
}


def _rejections(srv) -> int:
    return srv.log().count("rejected connection from")


def _wait_rejection(srv, before: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _rejections(srv) > before:
            return True
        time.sleep(0.05)
    return False


def _last_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else ""


_etcd_results: dict = {}   # (etcd port, key) -> result: etcd runs once for both engines


def _run(srv, flags, ok, key):
    """put, and get if it should work: (exit codes, outputs, etcdctl's error lines)."""
    if not ok:
        rc, out, err = servers.etcdctl(srv.endpoint, *flags, *FAIL_FAST, "put", key, "v")
        return rc, out, _last_error(err)
    put = servers.etcdctl(srv.endpoint, *flags, "put", key, "v-" + key)
    get = servers.etcdctl(srv.endpoint, *flags, "get", key)
    return put[0], put[1], _last_error(put[2]), get[0], get[1], _last_error(get[2])


def _compare(kv, et, engine, flags, ok, key):
    """The same etcdctl calls with ``flags`` against both; they must agree."""
    before = _rejections(kv)
    got = _run(kv, flags, ok, key)
    want = _etcd_results.get((et.port, key))
    if want is None:
        want = _etcd_results[(et.port, key)] = _run(et, flags, ok, key)
    assert got == want, f"kvcore {got} != etcd {want}"
    if ok:
        assert got[:2] == (0, "OK\n") and got[4] == f"{key}\nv-{key}\n"
    else:
        assert got[0] != 0 and "context deadline exceeded" in got[2]
        if engine == "native":   # the refusal is kvcore's TLS layer, and it says so
            assert _wait_rejection(kv, before), kv.log()[-2000:]


@pytest.mark.parametrize("scenario", sorted(TLS_SCENARIOS))
def test_etcdctl_server_tls(tls_pair, pki, engine, scenario):
    kv, et = tls_pair
    make_flags, ok = TLS_SCENARIOS[scenario]
    _compare(kv, et, engine, make_flags(pki), ok, f"tls-{scenario}")


@pytest.mark.parametrize("scenario", sorted(MTLS_SCENARIOS))
def test_etcdctl_client_cert_auth(mtls_pair, pki, engine, scenario):
    kv, et = mtls_pair
    make_flags, ok = MTLS_SCENARIOS[scenario]
    _compare(kv, et, engine, make_flags(pki), ok, f"mtls-{scenario}")


def test_trusted_ca_alone_requires_client_cert(tmp_path_factory, pki, engine):
    """etcd's ServerConfig: --trusted-ca-file without --client-cert-auth still makes
    the server require (and verify) a client certificate."""
    kv = _start_kv(tmp_path_factory, pki, "ca-only", engine, workers=1)
    et = _start_etcd(tmp_path_factory, pki, "ca-only")
    try:
        _compare(kv, et, engine, _ca(pki), False, "ca-only-no-cert")
        _compare(kv, et, engine, _client(pki), True, "ca-only-cert")
    finally:
        kv.stop()
        et.stop()


class _Watch:
    """``etcdctl watch`` in the background; its output collected by a thread."""

    def __init__(self, srv, flags, key):
        env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen([servers.ETCDCTL, "--endpoints", srv.endpoint, *flags,
                                      "watch", key], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.out = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.out += line

    def wait_for(self, text: str, timeout: float = 30.0, poke=None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.out:
                return True
            if poke:
                poke()
            time.sleep(0.2)
        return text in self.out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self._t.join(10)


def test_watch_over_tls_matches_etcd(mtls_pair, pki):
    kv, et = mtls_pair
    outs = []
    for srv in (kv, et):
        def put(value):
            return servers.etcdctl(srv.endpoint, *_client(pki), "put", "wk", value)

        w = _Watch(srv, _client(pki), "wk")
        try:
            # Registered once a put made after it shows up (keep writing, bounded).
            assert w.wait_for("warm", poke=lambda: put("warm")), w.out
            put("v1")
            servers.etcdctl(srv.endpoint, *_client(pki), "del", "wk")
            assert w.wait_for("DELETE\nwk\n\n"), w.out
            outs.append(w.out[w.out.index("PUT\nwk\nv1\n"):])
        finally:
            w.stop()
    assert outs[0] == outs[1]
    assert outs[0] == "PUT\nwk\nv1\nDELETE\nwk\n\n"


@pytest.mark.native_engine
def test_crl_rejects_revoked_client_cert(tmp_path_factory, pki):
    """--client-crl-file: a certificate the CRL lists is refused, others are not
    (native engine; the grpcio engine refuses to start with a CRL, see below)."""
    kv = _start_kv(tmp_path_factory, pki, "crl", "native", workers=1)
    et = _start_etcd(tmp_path_factory, pki, "crl")
    try:
        revoked = ("--cacert", pki.ca, "--cert", pki.revoked_cert, "--key", pki.revoked_key)
        _compare(kv, et, "native", revoked, False, "crl-revoked")
        with open(pki.revoked_cert, "rb") as f:
            n = x509.load_pem_x509_certificate(f.read()).serial_number
        serial = n.to_bytes((n.bit_length() + 7) // 8, "big").hex()   # Go's %x of its bytes
        assert f"transport: certificate serial {serial} revoked" in kv.log()
        _compare(kv, et, "native", _client(pki), True, "crl-good")
    finally:
        kv.stop()
        et.stop()


def test_expired_crl_still_serves_good_clients(tmp_path_factory, pki):
    """A CRL past its nextUpdate: etcd checks only the serials it lists, so good
    clients are served and listed ones refused. kvcore let OpenSSL check the CRL,
    which refused every client then (etcd's e2e TestCtlV3GetRevokedCRL, whose
    fixture CRL expired in 2021)."""
    flags = [f if f != pki.crl else pki.expired_crl for f in server_flags(pki, "crl")]
    kv = servers.start_kvcore(str(tmp_path_factory.mktemp("crl-old-kv") / "kv.etcd"),
                              workers=1, scheme="https",
                              extra=tuple(flags) + ("--grpc-engine", "native"))
    et = servers.start_etcd(str(tmp_path_factory.mktemp("crl-old-etcd") / "etcd.etcd"),
                            scheme="https", extra=tuple(flags))
    try:
        revoked = ("--cacert", pki.ca, "--cert", pki.revoked_cert, "--key", pki.revoked_key)
        _compare(kv, et, "native", revoked, False, "old-crl-revoked")
        _compare(kv, et, "native", _client(pki), True, "old-crl-good")
    finally:
        kv.stop()
        et.stop()


def test_grpcio_engine_refuses_crl(tmp_path, pki):
    with pytest.raises(RuntimeError) as e:
        servers.start_kvcore(str(tmp_path / "kv.etcd"), scheme="https",
                             extra=("--grpc-engine", "grpcio", *server_flags(pki, "crl")))
    assert "--client-crl-file is not supported by --grpc-engine grpcio" in str(e.value)


# ---- a Python grpcio client ----

def _grpc_put_get(srv, creds, key: bytes):
    with grpc.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=key, value=b"grpc"), timeout=10)
        return kv.Range(rpc_pb2.RangeRequest(key=key), timeout=10)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_grpcio_client_with_client_cert(mtls_pair, pki):
    kv, et = mtls_pair
    creds = grpc.ssl_channel_credentials(root_certificates=_read(pki.ca),
                                         private_key=_read(pki.client_key),
                                         certificate_chain=_read(pki.client_cert))
    for srv in (kv, et):
        resp = _grpc_put_get(srv, creds, b"grpc-key")
        assert [(x.key, x.value) for x in resp.kvs] == [(b"grpc-key", b"grpc")]


@pytest.mark.parametrize("case", ["no-client-cert", "wrong-ca"])
def test_grpcio_client_refused(mtls_pair, pki, case):
    kv, et = mtls_pair
    if case == "no-client-cert":
        creds = grpc.ssl_channel_credentials(root_certificates=_read(pki.ca))
    else:
        creds = grpc.ssl_channel_credentials(root_certificates=_read(pki.other_ca),
                                             private_key=_read(pki.client_key),
                                             certificate_chain=_read(pki.client_cert))
    codes = []
    for srv in (kv, et):
        with pytest.raises(grpc.RpcError) as e:
            with grpc.secure_channel(f"127.0.0.1:{srv.port}", creds) as ch:
                rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5)
        codes.append(e.value.code())
    assert codes[0] == codes[1]
    assert codes[0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# ---- curl: the JSON gateway, /health and /metrics over TLS ----

def _curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def test_curl_health_and_range_over_tls(mtls_pair, pki, engine):
    """With client certificates required, either engine serves HTTP too (on grpcio
    the native front ends TLS for HTTP clients, gRPC ones reach grpcio encrypted)."""
    kv, et = mtls_pair
    assert servers.etcdctl(kv.endpoint, *_client(pki), "put", "curl-key", "curl-value")[0] == 0
    cert = ("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)
    for http in ("--http1.1", "--http2"):
        rc, out, err = _curl(http, *cert, f"https://127.0.0.1:{kv.port}/health")
        assert rc == 0 and json.loads(out)["health"] == "true", err
        rc, out, err = _curl(http, *cert, f"https://127.0.0.1:{kv.port}/v3/kv/range",
                             "-d", json.dumps({"key": "Y3VybC1rZXk="}))
        assert rc == 0, err
        kvs = json.loads(out)["kvs"]
        assert [(x["key"], x["value"]) for x in kvs] == [("Y3VybC1rZXk=", "Y3VybC12YWx1ZQ==")]
    # Without a client certificate, or trusting another CA: refused, as etcd does.
    for srv in (kv, et):
        assert _curl("--cacert", pki.ca, f"https://127.0.0.1:{srv.port}/health")[0] != 0
        assert _curl("--cacert", pki.other_ca, "--cert", pki.client_cert, "--key",
                     pki.client_key, f"https://127.0.0.1:{srv.port}/health")[0] != 0


def test_curl_gateway_health_and_metrics_over_tls_on_either_engine(tls_pair, pki, engine):
    """Server TLS without client certificates: either engine serves HTTP as etcd (on
    grpcio the native front ends TLS; a gRPC client on the same port still works)."""
    kv, et = tls_pair
    got = []
    for srv in (kv, et):
        assert servers.etcdctl(srv.endpoint, *_ca(pki), "put", "tls-http", "v")[0] == 0
        base = f"https://127.0.0.1:{srv.port}"
        rc, health, err = _curl("--cacert", pki.ca, base + "/health")
        assert rc == 0, (srv.kind, err)
        rc, rng, err = _curl("--cacert", pki.ca, base + "/v3/kv/range",
                             "-d", json.dumps({"key": "dGxzLWh0dHA="}))
        assert rc == 0, (srv.kind, err)
        rc, metrics, err = _curl("--cacert", pki.ca, base + "/metrics")
        assert rc == 0, (srv.kind, err)
        got.append((json.loads(health)["health"],
                    [(x["key"], x["value"]) for x in json.loads(rng)["kvs"]],
                    "etcd_server_has_leader 1" in metrics))
    assert got[0] == got[1] == ("true",
                                [("dGxzLWh0dHA=", "dg==")], True)
    assert servers.etcdctl(kv.endpoint, *_ca(pki), "get", "tls-http",
                           "--print-value-only")[1].strip() == "v"
