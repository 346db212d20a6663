"""etcd's hidden --peer-client-cert-file/--peer-client-key-file: the certificate a
member shows when it dials its peers. With peer certificates that may only serve
(serverAuth) and a separate client certificate, a 2-member cluster forms on
kvcore as on etcd 3.5.1 (without the flag, each member would show its
serve-only certificate and its peers would refuse it)."""
from __future__ import annotations

import os
import time

from tests import servers
from tests.tlscerts import _CA, _write

ETCD351 = "/opt/etcd351/bin/etcd"


def _flags(d: str) -> tuple:
    ca = _CA("peer test CA")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        from cryptography.hazmat.primitives import serialization
        f.write(ca.cert.public_bytes(serialization.Encoding.PEM))
    srv = _write(os.path.join(d, "serve-only"), *ca.issue("peer", server=True, client=False))
    cli = _write(os.path.join(d, "client"), *ca.issue("peer-client", server=False,
                                                       client=True))
    return ("--peer-cert-file", srv[0], "--peer-key-file", srv[1],
            "--peer-trusted-ca-file", os.path.join(d, "ca.pem"), "--peer-client-cert-auth",
            "--peer-client-cert-file", cli[0], "--peer-client-key-file", cli[1])


def _members_started(members) -> list:
    deadline = time.monotonic() + 40
    out = []
    while time.monotonic() < deadline:
        rc, out, _ = servers.etcdctl(servers.endpoints(members), "member", "list")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if rc == 0 and len(lines) == 2 and all(", started, " in ln for ln in lines):
            rc, _, _ = servers.etcdctl(members[0].endpoint, "put", "k", "v")
            if rc == 0:
                return sorted(ln.split(", ")[1] for ln in lines)
        time.sleep(0.3)
    return []


def test_peer_client_cert_file_forms_a_cluster_like_etcd(tmp_path):
    flags = _flags(str(tmp_path / "pki"))
    got = []
    for binary in (None, ETCD351):
        ms = servers.start_cluster(str(tmp_path / ("kv" if binary is None else "etcd")), n=2,
                                   peer_scheme="https", extra=flags, etcd_binary=binary)
        try:
            got.append(_members_started(ms))
        finally:
            for m in ms:
                m.stop()
    assert got[0] == got[1] == ["started", "started"]
