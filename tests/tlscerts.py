"""Test certificates made with `cryptography` (independently of kvcore's own
auto-TLS code, so a bug there cannot hide behind the fixtures).

``make_pki(dir)`` writes a CA, a server certificate for 127.0.0.1/localhost (usable
as a client certificate too, as etcd's peer certificates are), a client
certificate, a second unrelated CA with its own client and server certificates, a
revoked client certificate and the CA's CRL listing it, and a certificate for
another address (127.0.0.2) only. Keys are ECDSA P-256, PEM.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvcore tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: str, cert: x509.Certificate, key) -> tuple[str, str]:
    with open(path + ".pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path + "-key.pem"
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return path + ".pem", key_path


class _CA:
    def __init__(self, cn: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False), True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                         self.key.public_key()), False)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, cn: str, *, server: bool, client: bool, hosts=("127.0.0.1", "localhost")):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn)).issuer_name(self.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.KeyUsage(
                 digital_signature=True, key_encipherment=True, key_cert_sign=False,
                 crl_sign=False, content_commitment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False), True)
             .add_extension(x509.ExtendedKeyUsage(usages), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), False))
        if hosts:
            sans = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            b = b.add_extension(x509.SubjectAlternativeName(sans), False)
        return b.sign(self.key, hashes.SHA256()), key

    def crl(self, revoked: list[x509.Certificate], valid_days: int = 30) -> bytes:
        """valid_days < 0: a CRL whose nextUpdate has passed."""
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now + (min(valid_days, 0) - 1) * _DAY)
             .next_update(now + valid_days * _DAY))
        for c in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(c.serial_number)
                .revocation_date(now - _DAY).build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class PKI:
    dir: str
    ca: str                 # trusted CA
    server_cert: str        # 127.0.0.1 + localhost, server and client auth
    server_key: str
    client_cert: str        # client auth, signed by ca
    client_key: str
    revoked_cert: str       # client auth, signed by ca, listed in crl
    revoked_key: str
    crl: str                # ca's CRL (PEM) revoking revoked_cert
    other_ca: str           # an unrelated CA
    other_client_cert: str  # client auth, signed by other_ca
    other_client_key: str
    other_server_cert: str  # 127.0.0.1 + localhost, server and client auth, by other_ca
    other_server_key: str
    elsewhere_cert: str     # by ca, server and client auth, but for 127.0.0.2 only
    elsewhere_key: str
    expired_crl: str = ""   # ca's CRL revoking revoked_cert, past its nextUpdate


def make_pki(directory: str) -> PKI:
    os.makedirs(directory, exist_ok=True)
    p = lambda n: os.path.join(directory, n)  # noqa: E731
    ca, other = _CA("kvcore test CA"), _CA("unrelated test CA")
    with open(p("ca.pem"), "wb") as f:
        f.write(ca.cert.public_bytes(serialization.Encoding.PEM))
    with open(p("other-ca.pem"), "wb") as f:
        f.write(other.cert.public_bytes(serialization.Encoding.PEM))
    server = _write(p("server"), *ca.issue("server", server=True, client=True))
    client = _write(p("client"), *ca.issue("client", server=False, client=True, hosts=()))
    revoked_pair = ca.issue("revoked", server=False, client=True, hosts=())
    revoked = _write(p("revoked"), *revoked_pair)
    with open(p("crl.pem"), "wb") as f:
        f.write(ca.crl([revoked_pair[0]]))
    o_client = _write(p("other-client"), *other.issue("other", server=False, client=True,
                                                      hosts=()))
    o_server = _write(p("other-server"), *other.issue("other-server", server=True,
                                                      client=True))
    elsewhere = _write(p("elsewhere"), *ca.issue("elsewhere", server=True, client=True,
                                                 hosts=("127.0.0.2",)))
    with open(p("crl-expired.pem"), "wb") as f:
        f.write(ca.crl([revoked_pair[0]], valid_days=-7))
    return PKI(directory, p("ca.pem"), *server, *client, *revoked, p("crl.pem"),
               p("other-ca.pem"), *o_client, *o_server, *elsewhere, p("crl-expired.pem"))
