"""etcd's TLS policy flags on top of kvcore/tls.py's contexts.

* ``--cipher-suites``: Go's cipher-suite names (crypto/tls), mapped to OpenSSL's.
  As in Go, they restrict TLS 1.2 only; TLS 1.3 suites are always on.
* ``--tls-min-version`` / ``--tls-max-version``: TLS1.2 or TLS1.3 (flags of etcd
  3.5.x after 3.5.1; the messages are etcd's). Without them kvcore speaks TLS 1.2
  only, as etcd 3.5.1 does (its ServerConfig and ClientConfig set MaxVersion to
  TLS 1.2 so that the cipher suites stay configurable); ``--tls-max-version TLS1.3``
  or ``--tls-min-version TLS1.3`` opens TLS 1.3.
* ``--client-cert-allowed-hostname``, ``--peer-cert-allowed-cn``,
  ``--peer-cert-allowed-hostname``: the verified client certificate must carry that
  CN, or be valid for that host name (its SANs), else the connection is refused
  (etcd: "client certificate authentication failed"). Python's ssl has no
  verify-peer hook, so the listener checks right after the handshake and closes the
  connection before any request is read (``peer_check``).
* Certificate and key files are re-read when they change on disk: etcd loads them
  per handshake (GetCertificate); here the context's SNI callback, which OpenSSL
  calls for every ClientHello (with or without a server name), swaps in a context
  built from the new files when their modification time or size changed.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from typing import Callable, Optional

log = logging.getLogger("kvcore.tls")

# Go crypto/tls names -> OpenSSL names (TLS 1.2 and older suites).
GO_CIPHERS = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# Accepted names that do not restrict anything (Go ignores TLS 1.3 suites here).
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256")
VERSIONS = {"": None, "TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}


class PolicyError(ValueError):
    """A policy flag etcd would refuse (the message is etcd's)."""


def openssl_ciphers(names: list[str]) -> str:
    out = []
    for n in names:
        if n in GO_CIPHERS:
            out.append(GO_CIPHERS[n])
        elif n not in TLS13_CIPHERS:
            raise PolicyError(f'unexpected TLS cipher suite "{n}"')
    return ":".join(out)


def tls_version(v: str):
    if v not in VERSIONS:
        raise PolicyError(f'unexpected TLS version "{v}" (must be one of: TLS1.2, TLS1.3)')
    return VERSIONS[v]


def validate(ciphers: list[str], min_version: str, max_version: str) -> None:
    """etcd's Config.Validate checks of these flags."""
    openssl_ciphers(ciphers)
    lo, hi = tls_version(min_version), tls_version(max_version)
    if hi is not None and lo is not None and lo > hi:
        raise PolicyError(f"min version ({min_version}) is greater than max version "
                          f"({max_version})")
    if lo == ssl.TLSVersion.TLSv1_3 and ciphers:
        raise PolicyError("cipher suites cannot be configured when only TLS1.3 is enabled")


def grpcio_refusal(info) -> str:
    """What of the policy grpcio cannot do where it ends TLS itself (the grpcio engine
    with --client-cert-auth): "" if nothing. grpc's Python credentials take a key
    pair, roots and whether to require a client certificate; the cipher suites go
    through the GRPC_SSL_CIPHER_SUITES variable (TLS 1.2 suites), and grpc core
    always offers TLS 1.2 and 1.3, with no per-handshake hook for a name check."""
    why = []
    if info.min_version == "TLS1.3":
        why.append("--tls-min-version TLS1.3")
    if info.max_version == "TLS1.2":
        why.append("--tls-max-version TLS1.2")
    if info.cipher_suites and not openssl_ciphers(info.cipher_suites):
        why.append("--cipher-suites with TLS 1.3 suites only")
    if info.allowed_hostname or info.allowed_cn:
        why.append("--client-cert-allowed-hostname")
    if not why:
        return ""
    return (f"{', '.join(why)} cannot be enforced by --grpc-engine grpcio with "
            "--client-cert-auth (grpc's TLS always offers TLS1.2 and TLS1.3 and has no "
            "certificate name hook); use --grpc-engine native")


def apply(ctx: ssl.SSLContext, info, server: bool) -> None:
    """Versions and ciphers on a context; for a server, the certificate reload
    and the allowed CN/host name check."""
    lo = tls_version(info.min_version) or ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = lo
    ctx.maximum_version = tls_version(info.max_version) or max(lo, ssl.TLSVersion.TLSv1_2)
    if info.cipher_suites:
        suites = openssl_ciphers(info.cipher_suites)
        if suites:
            ctx.set_ciphers(suites)
        else:   # only TLS 1.3 names: nothing is left for TLS 1.2
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if server:
        ctx.sni_callback = CertReloader(info, ctx)
        if info.allowed_cn or info.allowed_hostname:
            ctx.peer_check = allowed_check(info.allowed_cn, info.allowed_hostname)


class CertReloader:
    """An SNI callback serving the certificate files as they are now."""

    def __init__(self, info, base: ssl.SSLContext):
        self.info = info
        self.base = base
        self._stamp = self._files_stamp()
        self._current: Optional[ssl.SSLContext] = None

    def _files_stamp(self):
        try:
            return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in
                         (os.stat(self.info.cert_file), os.stat(self.info.key_file)))
        except OSError:
            return None

    def __call__(self, sslobj, server_name, ctx):
        stamp = self._files_stamp()
        if stamp is not None and stamp != self._stamp:
            try:
                fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                fresh.load_cert_chain(self.info.cert_file, self.info.key_file)
                self._current, self._stamp = fresh, stamp
                log.info("reloaded TLS certificate %s", self.info.cert_file)
            except (ssl.SSLError, OSError) as e:   # mid-rotation: keep serving the last
                log.warning("failed to reload TLS certificate %s: %s", self.info.cert_file, e)
        if self._current is not None:
            sslobj.context = self._current   # the certificate only; verification stays
        return None


def allowed_check(cn: str, hostname: str) -> Callable[[Optional[dict]], Optional[str]]:
    """peercert -> None if allowed, else why not (etcd's AllowedCN/AllowedHostname)."""
    def check(cert: Optional[dict]) -> Optional[str]:
        if not cert:
            return None   # no verified client certificate: the TLS settings decided
        if cn:
            ok = _subject_cn(cert) == cn
        else:
            ok = _valid_for(cert, hostname)
        return None if ok else "client certificate authentication failed"
    return check


class CRLCheck:
    """peercert -> None, or etcd's refusal when the certificate's serial is listed in
    the CRL file (re-read when the file changes, as etcd reads it per handshake)."""

    def __init__(self, path: str):
        self.path = path
        self.revoked: frozenset = frozenset()
        self._stamp = None

    def load(self) -> None:
        """OSError, or ValueError for a file that is no CRL."""
        from cryptography import x509
        st = os.stat(self.path)
        with open(self.path, "rb") as f:
            data = f.read()
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data \
            else x509.load_der_x509_crl(data)
        self.revoked = frozenset(r.serial_number for r in crl)
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def __call__(self, cert: Optional[dict]) -> Optional[str]:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                self.load()
        except (OSError, ValueError) as e:   # mid-rewrite: keep the last list
            log.warning("failed to reload CRL %s: %s", self.path, e)
        if not cert or "serialNumber" not in cert:
            return None
        serial = int(cert["serialNumber"], 16)
        if serial in self.revoked:
            h = f"{serial:x}"
            return f"transport: certificate serial {'0' * (len(h) % 2)}{h} revoked"
        return None


def first_refusal(*checks):
    """One peer check running each given one (None: skipped) until one refuses."""
    live = [c for c in checks if c is not None]

    def check(cert: Optional[dict]) -> Optional[str]:
        for c in live:
            why = c(cert)
            if why:
                return why
        return None
    return check


def _subject_cn(cert: dict) -> str:
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


def _valid_for(cert: dict, host: str) -> bool:
    """Go's x509.Certificate.VerifyHostname: an IP against IP SANs, a name against
    DNS SANs (one leading '*.' label wildcard)."""
    sans = cert.get("subjectAltName", ())
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        for k, v in sans:
            if k == "IP Address":
                try:
                    if ipaddress.ip_address(v.strip()) == ip:
                        return True
                except ValueError:
                    continue
        return False
    want = host.rstrip(".").lower()
    for k, v in sans:
        if k != "DNS":
            continue
        v = v.rstrip(".").lower()
        if v == want:
            return True
        if v.startswith("*.") and "." in want and want.split(".", 1)[1] == v[2:]:
            return True
    return False
