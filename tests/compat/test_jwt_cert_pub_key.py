"""--auth-token jwt with a certificate as pub-key: etcd (jwt-go's
ParseRSAPublicKeyFromPEM) takes the certificate's key; kvcore refused to start ("no
BEGIN PUBLIC KEY"), which failed every JWT test of etcd's e2e suite (its options name
integration/fixtures/server.crt). Both sides: start, enable auth, write as root."""
from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests import etcd351, servers


def _rsa_cert(base: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwt")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    crt, pem = os.path.join(base, "jwt.crt"), os.path.join(base, "jwt.key")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(pem, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return crt, pem


def test_certificate_as_jwt_pub_key_as_etcd(tmp_path):
    crt, key = _rsa_cert(str(tmp_path))
    opts = ("--auth-token", f"jwt,pub-key={crt},priv-key={key},sign-method=RS256,ttl=5m")
    with servers.kvcore_and_etcd(tmp_path, kv_extra=opts, etcd_extra=opts,
                                 etcd_binary=etcd351.ETCD) as (kv, et):
        for srv in (kv, et):
            for args in (("user", "add", "root:pw"), ("auth", "enable"),
                         ("--user", "root:pw", "put", "k", "v")):
                rc, out, err = srv.etcdctl(*args)
                assert rc == 0, (srv.kind, args, err)
            rc, out, _ = srv.etcdctl("--user", "root:pw", "get", "k", "--print-value-only")
            assert (rc, out.strip()) == (0, "v")
