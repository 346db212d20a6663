"""TLS settings as etcd takes them: start-up errors (compared with etcd 3.4.23's),
auto TLS fixtures, ETCD_* environment variables, YAML config keys, and http and
https client URLs side by side."""
import json
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import servers
from tests.tlscerts import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def _run_to_exit(argv, env=None, timeout=60):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    return p.returncode, p.stdout + p.stderr


def _urls(client_scheme, peer_scheme):
    port, peer = servers.free_port(), servers.free_port()
    return ["--listen-client-urls", f"{client_scheme}://127.0.0.1:{port}",
            "--advertise-client-urls", f"{client_scheme}://127.0.0.1:{port}",
            "--listen-peer-urls", f"{peer_scheme}://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"{peer_scheme}://127.0.0.1:{peer}",
            "--initial-cluster", f"default={peer_scheme}://127.0.0.1:{peer}"]


@pytest.mark.parametrize("client_scheme,peer_scheme,message", [
    ("https", "http", "TLS key/cert (--cert-file, --key-file) must be provided for client "
                      "url https://127.0.0.1:{client} with HTTPS scheme"),
    ("http", "https", "cannot listen on TLS for 127.0.0.1:{peer}: KeyFile and CertFile are "
                      "not presented"),
])
def test_https_url_without_cert_exits_with_etcds_error(tmp_path, client_scheme, peer_scheme,
                                                       message):
    urls = _urls(client_scheme, peer_scheme)
    client = urls[1].rsplit(":", 1)[1]
    peer = urls[5].rsplit(":", 1)[1]
    want = message.format(client=client, peer=peer)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    rc_etcd, out_etcd = _run_to_exit([servers.ETCD, "--data-dir", str(tmp_path / "e"), *urls],
                                     env=env)
    rc_kv, out_kv = _run_to_exit([sys.executable, "-m", "kvcore", "--data-dir",
                                  str(tmp_path / "k"), *urls], env=env)
    assert rc_etcd != 0 and want in out_etcd, out_etcd
    assert rc_kv == rc_etcd and want in out_kv, out_kv


def _auto_tls_facts(path):
    """What an auto-TLS fixture directory holds, independent of random parts."""
    files = sorted(os.listdir(path))
    with open(os.path.join(path, "cert.pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    key_mode = oct(os.stat(os.path.join(path, "key.pem")).st_mode & 0o777)
    with open(os.path.join(path, "key.pem")) as f:
        key_header = f.readline().strip()
    return {
        "files": files,
        "key_mode": key_mode,
        "key_header": key_header,
        "curve": cert.public_key().curve.name
        if isinstance(cert.public_key(), ec.EllipticCurvePublicKey) else None,
        "subject_o": [a.value for a in cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATION_NAME)],
        "self_signed": cert.issuer == cert.subject,
        "eku": sorted(o.dotted_string for o in cert.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage).value),
        "sans": [str(i) for i in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)],
        "years": round((cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365),
    }


AUTO_TLS_CTL = ("--insecure-transport=false", "--insecure-skip-tls-verify")


def test_auto_tls_like_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), scheme="https",
                              extra=("--auto-tls",), ctl_args=AUTO_TLS_CTL)
    et = servers.start_etcd(str(tmp_path / "etcd.etcd"), scheme="https",
                            extra=("--auto-tls",), ctl_args=AUTO_TLS_CTL)
    try:
        for srv in (kv, et):
            assert srv.etcdctl("put", "auto", "tls")[:2] == (0, "OK\n")
            assert srv.etcdctl("get", "auto", "--print-value-only")[1] == "tls\n"
            # A client that verifies the server against a CA it does not have: refused.
            rc, _, err = servers.etcdctl(srv.endpoint, "--insecure-transport=false",
                                         "--dial-timeout=2s", "--command-timeout=3s",
                                         "get", "auto")
            assert rc != 0 and "context deadline exceeded" in err
        got = _auto_tls_facts(os.path.join(kv.data_dir, "fixtures", "client"))
        want = _auto_tls_facts(os.path.join(et.data_dir, "fixtures", "client"))
        assert got == want
        assert got["sans"] == ["127.0.0.1"] and got["eku"] == [
            ExtendedKeyUsageOID.SERVER_AUTH.dotted_string]
        # Kept across a restart (etcd's SelfCert reuses existing files).
        with open(os.path.join(kv.data_dir, "fixtures", "client", "cert.pem"), "rb") as f:
            before = f.read()
        kv = kv.restart()
        with open(os.path.join(kv.data_dir, "fixtures", "client", "cert.pem"), "rb") as f:
            assert f.read() == before
        assert kv.etcdctl("get", "auto", "--print-value-only")[1] == "tls\n"
    finally:
        kv.stop()
        et.stop()


def _mtls_ctl(pki):
    return ("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)


def _assert_mtls(srv, pki):
    assert srv.etcdctl("put", "k", "v")[:2] == (0, "OK\n")
    rc, _, err = servers.etcdctl(srv.endpoint, "--cacert", pki.ca, "--dial-timeout=2s",
                                 "--command-timeout=3s", "get", "k")
    assert rc != 0 and "context deadline exceeded" in err
    assert "rejected connection from" in srv.log()


# "rejected connection from" is logged by kvcore's TLS listener (kvcore.tls), which
# serves the native engine; grpcio's handshakes happen inside grpc core
@pytest.mark.native_engine
def test_tls_flags_from_environment(tmp_path, pki):
    env = {"ETCD_CERT_FILE": pki.server_cert, "ETCD_KEY_FILE": pki.server_key,
           "ETCD_CLIENT_CERT_AUTH": "true", "ETCD_TRUSTED_CA_FILE": pki.ca}
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), scheme="https", env_extra=env,
                              ctl_args=_mtls_ctl(pki))
    try:
        _assert_mtls(kv, pki)
    finally:
        kv.stop()


@pytest.mark.native_engine   # see test_tls_flags_from_environment
def test_tls_keys_in_yaml_config_file(tmp_path, pki):
    port, peer = servers.free_port(), servers.free_port()
    data_dir = str(tmp_path / "kv.etcd")
    cfg = {
        "name": "default", "data-dir": data_dir, "workers": 1,
        "listen-client-urls": f"https://127.0.0.1:{port}",
        "advertise-client-urls": f"https://127.0.0.1:{port}",
        "listen-peer-urls": f"http://127.0.0.1:{peer}",
        "initial-advertise-peer-urls": f"http://127.0.0.1:{peer}",
        "initial-cluster": f"default=http://127.0.0.1:{peer}",
        "cert-file": pki.server_cert, "key-file": pki.server_key,
        "client-cert-auth": True, "trusted-ca-file": pki.ca,
    }
    path = tmp_path / "kvcore.yaml"
    path.write_text(json.dumps(cfg))   # JSON is YAML
    argv = [sys.executable, "-m", "kvcore", "--config-file", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    kv = servers._launch("kvcore", argv, port, peer, data_dir, data_dir + ".log", env,
                         "https", _mtls_ctl(pki))
    try:
        _assert_mtls(kv, pki)
    finally:
        kv.stop()


def _curl_health(url, *args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", *args, url + "/health"],
                       capture_output=True, text=True, timeout=30)
    return p.returncode == 0 and json.loads(p.stdout or "{}").get("health") == "true"


@pytest.mark.native_engine   # /health on the client port: native engine only
@pytest.mark.parametrize("same_port", [True, False], ids=["one-port", "two-ports"])
def test_http_and_https_client_urls_side_by_side(tmp_path, pki, same_port):
    """As etcd: each URL serves its scheme; one address listed with both schemes
    serves both (the native engine tells TLS from plain by the first byte)."""
    port = servers.free_port()
    tls_port = port if same_port else servers.free_port()
    urls = f"http://127.0.0.1:{port},https://127.0.0.1:{tls_port}"
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2, port=port, extra=(
        "--listen-client-urls", urls, "--advertise-client-urls", urls,
        "--cert-file", pki.server_cert, "--key-file", pki.server_key))
    try:
        plain, secure = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}"
        assert servers.etcdctl(plain, "put", "mixed", "1")[0] == 0
        rc, out, err = servers.etcdctl(secure, "--cacert", pki.ca, "get", "mixed")
        assert (rc, out) == (0, "mixed\n1\n"), err
        assert _curl_health(plain) and _curl_health(secure, "--cacert", pki.ca)
        assert "scheme is HTTP while key and cert files are present" in kv.log()
        if not same_port:   # the https port does not speak plain HTTP, and vice versa
            assert not _curl_health(f"http://127.0.0.1:{tls_port}")
            assert not _curl_health(f"https://127.0.0.1:{port}", "--cacert", pki.ca)
    finally:
        kv.stop()


def test_grpcio_engine_http_and_https_on_one_port_is_refused(tmp_path, pki):
    port = servers.free_port()
    urls = f"http://127.0.0.1:{port},https://127.0.0.1:{port}"
    with pytest.raises(RuntimeError) as e:
        servers.start_kvcore(str(tmp_path / "kv.etcd"), port=port, extra=(
            "--grpc-engine", "grpcio", "--listen-client-urls", urls,
            "--advertise-client-urls", urls,
            "--cert-file", pki.server_cert, "--key-file", pki.server_key))
    assert "the grpcio engine cannot serve http and https on one address" in str(e.value)


def test_missing_cert_file_exits_with_its_name(tmp_path, pki):
    urls = _urls("https", "http")
    rc, out = _run_to_exit([sys.executable, "-m", "kvcore", "--data-dir", str(tmp_path / "k"),
                            *urls, "--cert-file", str(tmp_path / "nope.pem"),
                            "--key-file", pki.server_key])
    assert rc != 0 and f"open {tmp_path / 'nope.pem'}: no such file or directory" in out
