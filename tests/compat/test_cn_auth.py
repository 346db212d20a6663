"""The client certificate's CN as the user (--client-cert-auth, no token): the same
etcdctl 3.5.1 script against kvcore (both engines) and etcd 3.5.1 started with the
same certificates; exit codes, output and error lines must agree."""
import os
import subprocess

import pytest

from tests import servers
from tests.tlscerts import make_pki

ETCD351 = "/opt/etcd351/bin/etcd"
ETCDCTL351 = "/opt/etcd351/bin/etcdctl"


def ctl(srv, pki, *args, cert="client"):
    certs = {"client": (pki.client_cert, pki.client_key),
             "server": (pki.server_cert, pki.server_key)}[cert]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    p = subprocess.run([ETCDCTL351, "--endpoints", f"https://127.0.0.1:{srv.port}",
                        "--cacert", pki.ca, "--cert", certs[0], "--key", certs[1],
                        "--command-timeout=10s", *args],
                       capture_output=True, text=True, timeout=30, env=env)
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith('{"level"'))
    return p.returncode, p.stdout, err


SETUP = [
    ("user", "add", "root:rootpw"), ("role", "add", "root"),
    ("user", "grant-role", "root", "root"),
    ("user", "add", "client", "--no-password"),      # the client certificate's CN
    ("user", "add", "alice:apw"),
    ("role", "add", "rw"), ("role", "grant-permission", "rw", "readwrite", "/a/", "--prefix"),
    ("role", "add", "bonly"), ("role", "grant-permission", "bonly", "readwrite", "/b"),
    ("user", "grant-role", "client", "rw"), ("user", "grant-role", "alice", "bonly"),
    ("auth", "enable"),
]

SCRIPT = [
    ("client", ("put", "/a/x", "1")),                 # CN "client": may write /a/
    ("client", ("get", "/a/x")),
    ("client", ("put", "/b", "1")),                   # but not /b
    ("client", ("--user", "alice:apw", "put", "/b", "2")),   # a token wins over the CN
    ("client", ("--user", "alice:apw", "put", "/a/y", "2")),
    ("client", ("user", "list")),                     # not an admin
    ("client", ("txn",)),
    ("server", ("put", "/a/z", "1")),                 # CN "server": no such user
    ("server", ("get", "/a/x")),
    ("client", ("--user", "root:rootpw", "role", "revoke-permission", "rw", "/a/",
                "--prefix")),
    ("client", ("put", "/a/x", "3")),                 # revoked
    ("client", ("user", "get", "client")),            # a user may read itself
]


def _run(srv, pki):
    out = []
    for args in SETUP:
        rc, o, e = ctl(srv, pki, *args)
        assert rc == 0, (args, o, e)
    for cert, args in SCRIPT:
        rc, o, e = ctl(srv, pki, *args, cert=cert) if args != ("txn",) else _txn(srv, pki)
        out.append((cert, args, rc, o, e))
    return out


def _txn(srv, pki):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    p = subprocess.run([ETCDCTL351, "--endpoints", f"https://127.0.0.1:{srv.port}",
                        "--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
                        "txn"], input='value("/a/x") = "1"\n\nput /a/t ok\n\nput /b no\n\n',
                       capture_output=True, text=True, timeout=30, env=env)
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith('{"level"'))
    return p.returncode, p.stdout, err


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def _flags(pki):
    return ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
            "--client-cert-auth", "--trusted-ca-file", pki.ca)


@pytest.fixture(scope="module")
def etcd_result(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("cn-etcd")
    et = servers.start_etcd(str(d / "etcd.etcd"), binary=ETCD351, scheme="https",
                            extra=_flags(pki))
    try:
        return _run(et, pki)
    finally:
        et.stop()


@pytest.mark.parametrize("engine", ["native", "grpcio"])
def test_certificate_cn_is_the_user_as_in_etcd(engine, pki, etcd_result, tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, scheme="https",
                              extra=("--grpc-engine", engine, *_flags(pki)))
    try:
        got = _run(kv, pki)
    finally:
        kv.stop()
    for g, w in zip(got, etcd_result):
        assert g == w
    # The script shows what it should: the CN alone writes, and is refused elsewhere.
    assert etcd_result[0][2] == 0 and etcd_result[0][3] == "OK\n"
    assert "permission denied" in etcd_result[2][4]
