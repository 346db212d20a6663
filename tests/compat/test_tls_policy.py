"""TLS policy flags, with the real openssl s_client and etcdctl: cipher suites and
allowed client host names compared with etcd 3.5.1; TLS versions (flags etcd adds
after 3.5.1) against kvcore alone; certificate files rotated on disk are served
to the next connection without a restart, by kvcore as by etcd."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests import servers
from tests.tlscerts import make_pki

ETCD351 = "/opt/etcd351/bin/etcd"
ETCDCTL351 = "/opt/etcd351/bin/etcdctl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def s_client(port, *args) -> tuple[bool, str, str]:
    """(handshake done, negotiated cipher, server certificate subject)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-noservername", *args], input="", capture_output=True, text=True,
                       errors="replace", timeout=20)
    out = p.stdout + p.stderr
    cipher = next((l.split("Cipher is", 1)[1].strip() for l in out.splitlines()
                   if l.startswith("New, ") and "Cipher is" in l), "")
    subject = next((l.split("=", 1)[1].strip() for l in out.splitlines()
                    if l.startswith("subject=")), "")
    ok = p.returncode == 0 and cipher not in ("", "0000", "(NONE)")
    return ok, cipher if ok else "", subject if ok else ""


def _pair(tmp_path, extra, kv_extra=()):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, scheme="https",
                              extra=(*extra, *kv_extra))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351, scheme="https",
                                extra=extra)
    except BaseException:
        kv.stop()
        raise
    return kv, et


def test_cipher_suites_refuse_what_etcd_refuses(pki, tmp_path):
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305")
    kv, et = _pair(tmp_path, flags)
    try:
        probes = [("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),   # not listed
                  ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"),   # listed
                  ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"),   # listed
                  ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"),          # not listed
                  ("-tls1_3",)]                          # etcd 3.5.1: TLS 1.2 only
        got = [s_client(kv.port, *p)[:2] for p in probes]
        want = [s_client(et.port, *p)[:2] for p in probes]
    finally:
        kv.stop()
        et.stop()
    assert got == want
    assert [ok for ok, _ in want] == [False, True, True, False, False]


def test_tls_versions(pki, tmp_path):
    base = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    for flags, want in [(("--tls-min-version", "TLS1.3"), [False, True]),
                        (("--tls-max-version", "TLS1.2"), [True, False]),
                        (("--tls-max-version", "TLS1.3"), [True, True]),
                        ((), [True, False])]:                 # as etcd 3.5.1
        kv = servers.start_kvcore(str(tmp_path / f"kv{len(flags)}{want}.etcd"), workers=1,
                                  scheme="https", extra=(*base, *flags))
        try:
            got = [s_client(kv.port, v)[0] for v in ("-tls1_2", "-tls1_3")]
        finally:
            kv.stop()
        assert got == want, flags


@pytest.mark.parametrize("flags,message", [
    (("--tls-min-version", "TLS1.1"),
     'unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)'),
    (("--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"),
     "min version (TLS1.3) is greater than max version (TLS1.2)"),
    (("--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"),
     "cipher suites cannot be configured when only TLS1.3 is enabled"),
    (("--cipher-suites", "TLS_NOPE"), 'unexpected TLS cipher suite "TLS_NOPE"'),
])
def test_policy_flags_are_validated_with_etcds_messages(flags, message, tmp_path):
    p = subprocess.run([sys.executable, "-m", "kvcore", "--data-dir", str(tmp_path / "d"),
                        *flags], capture_output=True, text=True, timeout=30)
    out = (p.stdout + p.stderr).replace('\\"', '"')   # the log line is JSON
    assert p.returncode != 0 and message in out, out


def _ctl(srv, pki, cert, key):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    p = subprocess.run([ETCDCTL351, "--endpoints", f"https://127.0.0.1:{srv.port}",
                        "--cacert", pki.ca, "--cert", cert, "--key", key,
                        "--dial-timeout=2s", "--command-timeout=3s", "put", "k", "v"],
                       capture_output=True, text=True, timeout=30, env=env)
    return p.returncode, p.stdout


# grpc's TLS has no certificate name hook: kvcore refuses this flag on the grpcio
# engine (what pure-Python mode serves gRPC with) and says so
@pytest.mark.native_engine
def test_client_cert_allowed_hostname_as_etcd(pki, tmp_path):
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--client-cert-auth", "--trusted-ca-file", pki.ca,
             "--client-cert-allowed-hostname", "localhost")
    kv, et = _pair(tmp_path, flags)
    try:
        results = {}
        for name, srv in (("kvcore", kv), ("etcd", et)):
            results[name] = [
                _ctl(srv, pki, pki.server_cert, pki.server_key),     # SAN localhost
                _ctl(srv, pki, pki.client_cert, pki.client_key),     # no SAN
                _ctl(srv, pki, pki.elsewhere_cert, pki.elsewhere_key)]   # 127.0.0.2 only
    finally:
        kv.stop()
        et.stop()
    assert results["kvcore"] == results["etcd"]
    assert [rc for rc, _ in results["etcd"]] == [0, 1, 1]
    assert "client certificate authentication failed" in kv.log()


def test_rotated_certificate_is_served_without_restart(pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "server.pem"), str(live / "server-key.pem")
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    kv, et = _pair(tmp_path, ("--cert-file", cert, "--key-file", key))
    try:
        before = [s_client(s.port)[2] for s in (kv, et)]
        # Rotate as tools do: write new files, then rename them over the old ones.
        shutil.copy(pki.elsewhere_cert, cert + ".new")
        shutil.copy(pki.elsewhere_key, key + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
        after = [s_client(s.port)[2] for s in (kv, et)]
        procs_alive = [s.proc.poll() is None for s in (kv, et)]
    finally:
        kv.stop()
        et.stop()
    assert before == ["O = kvcore tests, CN = server"] * 2
    assert after == ["O = kvcore tests, CN = elsewhere"] * 2
    assert procs_alive == [True, True]


def test_cipher_suites_on_grpcio_with_client_cert_auth(pki, tmp_path):
    """grpcio ends TLS itself with --client-cert-auth: the cipher suites reach grpc
    core (GRPC_SSL_CIPHER_SUITES) and a TLS 1.2 client is refused as etcd refuses it."""
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--client-cert-auth", "--trusted-ca-file", pki.ca,
             "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    kv, et = _pair(tmp_path, flags, kv_extra=("--grpc-engine", "grpcio"))
    client = ("-cert", pki.client_cert, "-key", pki.client_key, "-alpn", "h2")   # grpc needs h2
    try:
        probes = [("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),   # not listed
                  ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"),   # listed
                  ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")]   # not listed
        got = [s_client(kv.port, *p, *client)[:2] for p in probes]
        want = [s_client(et.port, *p, *client)[:2] for p in probes]
        rc, _, err = kv.etcdctl("--cacert", pki.ca, "--cert", pki.client_cert,
                                "--key", pki.client_key, "put", "k", "v")
        assert rc == 0, err
    finally:
        kv.stop()
        et.stop()
    assert got == want
    assert [ok for ok, _ in want] == [False, True, False]


@pytest.mark.parametrize("flags", [("--tls-max-version", "TLS1.2"),
                                   ("--tls-min-version", "TLS1.3")])
def test_grpcio_with_client_cert_auth_refuses_what_it_cannot_enforce(pki, tmp_path, flags):
    p = subprocess.run(
        [sys.executable, "-m", "kvcore", "--data-dir", str(tmp_path / "d"),
         "--grpc-engine", "grpcio", "--cert-file", pki.server_cert, "--key-file",
         pki.server_key, "--client-cert-auth", "--trusted-ca-file", pki.ca,
         "--listen-client-urls", "https://127.0.0.1:0",
         "--advertise-client-urls", "https://127.0.0.1:2379", *flags],
        capture_output=True, text=True, timeout=30)
    out = (p.stdout + p.stderr).replace('\\"', '"')
    assert p.returncode == 1, out
    assert f"{' '.join(flags)} cannot be enforced by --grpc-engine grpcio with " \
           "--client-cert-auth" in out, out
