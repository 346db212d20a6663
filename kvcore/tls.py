"""TLS for client and peer URLs, with etcd's semantics (etcd's ``transport.TLSInfo``).

A :class:`TLSInfo` names the files of one side (client or peer) and builds the
contexts: :meth:`server_context` for a listener, :meth:`client_context` for a
member dialling a peer, :meth:`grpc_server_credentials` for the grpcio engine.
As in etcd:

* a trusted CA file alone already makes the server require a client certificate
  signed by it (``--client-cert-auth`` without a CA file uses the system roots);
* a CRL file rejects client certificates it lists (their serials, checked right
  after the handshake, as etcd does: the CRL's dates and signer are not looked at);
* auto TLS (:func:`self_cert`) writes an ECDSA P-521 self-signed certificate to
  ``<data-dir>/fixtures/{client,peer}/{cert,key}.pem`` (reused on restart); a
  member dialling peers with such a certificate does not verify theirs.

:class:`TLSListener` accepts on a listening socket and finishes each handshake
before the connection reaches its protocol, so a failed one is logged like etcd's
``rejected connection from ...``. With ``allow_plaintext`` it sniffs the first
byte, serving http and https URLs on one port as etcd's cmux does.
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional
from urllib.parse import urlparse

from kvcore import tls_policy

log = logging.getLogger("kvcore.tls")

TLS_RECORD_HANDSHAKE = 0x16   # first byte of a ClientHello


class TLSConfigError(Exception):
    """A TLS setting that stops the start (etcd's wording where it has one)."""


@dataclass
class TLSInfo:
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    crl_file: str = ""
    self_cert: bool = False          # made by auto TLS: as a client, skip verification
    skip_client_san_verify: bool = False
    # etcd's policy flags (kvcore/tls_policy.py)
    cipher_suites: list = field(default_factory=list)
    min_version: str = "TLS1.2"
    max_version: str = ""
    allowed_cn: str = ""
    allowed_hostname: str = ""
    # The certificate this member shows when it dials as a client (etcd's hidden
    # --client-cert-file / --peer-client-cert-file); cert_file when not given.
    client_cert_file: str = ""
    client_key_file: str = ""

    def empty(self) -> bool:
        return not self.cert_file and not self.key_file

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["TLSInfo"]:
        return None if d is None else cls(**d)

    def __str__(self) -> str:   # etcd 3.5's TLSInfo.String()
        return (f"cert = {self.cert_file}, key = {self.key_file}, client-cert="
                f"{self.client_cert_file}, client-key={self.client_key_file}, trusted-ca = "
                f"{self.trusted_ca_file}, client-cert-auth = {str(self.client_cert_auth).lower()}"
                f", crl-file = {self.crl_file}")

    def requires_client_cert(self) -> bool:
        return bool(self.trusted_ca_file) or self.client_cert_auth

    # ---- contexts ----

    def server_context(self) -> ssl.SSLContext:
        if self.empty():
            raise TLSConfigError("KeyFile and CertFile are not presented")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._load_pair(ctx)
        self._check_client_pair()
        tls_policy.apply(ctx, self, server=True)
        if self.requires_client_cert():
            ctx.verify_mode = ssl.CERT_REQUIRED
            if self.trusted_ca_file:
                self._load_ca(ctx)
            else:
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        if self.crl_file:
            _load_crl(ctx, self.crl_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls_policy.apply(ctx, self, server=False)
        if self.client_cert_file:
            self._check_client_pair()
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif not self.empty():
            self._load_pair(ctx)
        if self.self_cert:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.trusted_ca_file:
            self._load_ca(ctx)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return ctx

    def grpc_server_credentials(self):
        import grpc
        if self.crl_file:
            raise TLSConfigError("--client-crl-file is not supported by --grpc-engine grpcio "
                                 "(use the native engine)")
        refused = tls_policy.grpcio_refusal(self)
        if refused:
            raise TLSConfigError(refused)
        if self.cipher_suites:
            # grpc's one knob for them: read by grpc core when it first builds TLS
            # credentials, and this worker process builds only these.
            os.environ["GRPC_SSL_CIPHER_SUITES"] = tls_policy.openssl_ciphers(
                self.cipher_suites)
        with open(self.cert_file, "rb") as f:
            cert = f.read()
        with open(self.key_file, "rb") as f:
            key = f.read()
        ca = None
        if self.trusted_ca_file:
            with open(self.trusted_ca_file, "rb") as f:
                ca = f.read()
        elif self.client_cert_auth:
            raise TLSConfigError("--client-cert-auth without --trusted-ca-file (system roots) "
                                 "is not supported by --grpc-engine grpcio")
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                           require_client_auth=self.requires_client_cert())

    def _load_pair(self, ctx: ssl.SSLContext) -> None:
        _must_exist(self.cert_file, self.key_file)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as e:
            raise TLSConfigError(f"cannot load key pair {self.cert_file}, {self.key_file}: "
                                 f"{reason(e)}")

    def _check_client_pair(self) -> None:
        """etcd's baseConfig: the client pair is given whole and loads."""
        if bool(self.client_key_file) != bool(self.client_cert_file):
            raise TLSConfigError(f"ClientKeyFile and ClientCertFile must both be present or "
                                 f"both absent: key: {self.client_key_file}, cert: "
                                 f"{self.client_cert_file}]")
        if self.client_cert_file:
            _must_exist(self.client_cert_file, self.client_key_file)
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    self.client_cert_file, self.client_key_file)
            except (ssl.SSLError, OSError) as e:
                raise TLSConfigError(f"cannot load key pair {self.client_cert_file}, "
                                     f"{self.client_key_file}: {reason(e)}")

    def _load_ca(self, ctx: ssl.SSLContext) -> None:
        _must_exist(self.trusted_ca_file)
        try:
            ctx.load_verify_locations(self.trusted_ca_file)
        except (ssl.SSLError, OSError) as e:
            raise TLSConfigError(f"cannot load trusted CA file {self.trusted_ca_file}: "
                                 f"{reason(e)}")


def _must_exist(*paths: str) -> None:
    for p in paths:
        if not os.path.exists(p):
            raise TLSConfigError(f"open {p}: no such file or directory")


def reason(e: BaseException) -> str:
    """A short text for an ssl or OS error: "certificate verify failed: unable to get
    local issuer certificate", "peer did not return a certificate"."""
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return f"certificate verify failed: {e.verify_message}"
    if isinstance(e, ssl.SSLError) and e.reason:
        return e.reason.lower().replace("_", " ")
    if isinstance(e, ConnectionResetError):
        return "connection reset by peer"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _load_crl(ctx: ssl.SSLContext, path: str) -> None:
    """A CRL in PEM or DER, checked as etcd's checkCRL does: after the handshake, the
    client certificate's serial against the CRL's list, whatever the CRL's dates or
    signer (OpenSSL's own check refused every client once the CRL's nextUpdate had
    passed). As etcd reads the file at each handshake, a changed file is re-read."""
    crl = tls_policy.CRLCheck(path)
    try:
        crl.load()
    except OSError as e:
        raise TLSConfigError(f"open {path}: {e.strerror}")
    except ValueError as e:
        raise TLSConfigError(f"cannot load CRL file {path}: {reason(e)}")
    ctx.peer_check = tls_policy.first_refusal(crl, getattr(ctx, "peer_check", None))


# ---- auto TLS ----

def self_cert(dirpath: str, hosts: list[str], validity_years: int = 1,
              client_auth: bool = False) -> TLSInfo:
    """etcd's transport.SelfCert: reuse <dir>/cert.pem and key.pem, or write a new
    self-signed ECDSA P-521 certificate (O=etcd) for ``hosts`` (host:port)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if validity_years <= 0:
        raise TLSConfigError("selfSignedCertValidity is invalid,it should be greater than 0")
    parent = os.path.dirname(os.path.abspath(dirpath))
    for d in (os.path.dirname(parent), parent, dirpath):   # etcd's TouchDirAll: 0700
        os.makedirs(d, mode=0o700, exist_ok=True)
    cert_path = os.path.abspath(os.path.join(dirpath, "cert.pem"))
    key_path = os.path.abspath(os.path.join(dirpath, "key.pem"))
    info = TLSInfo(cert_file=cert_path, key_file=key_path, self_cert=True)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return info
    key = ec.generate_private_key(ec.SECP521R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=365 * validity_years)
    log.warning("automatically generate certificates (valid until %s)", not_after.isoformat())
    sans: list = []
    for h in hosts:
        host = h.rsplit(":", 1)[0].strip("[]") if ":" in h else h
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                  if client_auth else [])
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(not_after)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                      content_commitment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False,
                                      decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(key, hashes.SHA256())
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created cert file %s", cert_path)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    log.info("created key file %s", key_path)
    return info


# ---- from the configuration ----

def _hosts(urls: list[str]) -> list[str]:
    return [urlparse(u).netloc for u in urls]


def _policy(cfg) -> dict:
    return {"cipher_suites": list(cfg.cipher_suites), "min_version": cfg.tls_min_version,
            "max_version": cfg.tls_max_version}


def client_info(cfg) -> Optional[TLSInfo]:
    """The client side's TLSInfo (None when no client URL is https), after auto TLS;
    etcd's checks and warnings (embed.configureClientListeners)."""
    info = TLSInfo(cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth,
                   cfg.client_crl_file, allowed_hostname=cfg.client_cert_allowed_hostname,
                   client_cert_file=cfg.client_cert_file, client_key_file=cfg.client_key_file,
                   **_policy(cfg))
    if cfg.auto_tls and info.empty():
        info = self_cert(os.path.join(cfg.data_dir, "fixtures", "client"),
                         _hosts(cfg.listen_client_urls), cfg.self_signed_cert_validity)
    elif cfg.auto_tls:
        log.warning("ignoring client auto TLS since certs given")
    secure = False
    for u in cfg.listen_client_urls:
        scheme = urlparse(u).scheme
        if scheme in ("http", "unix"):
            if not info.empty():
                log.warning("scheme is HTTP while key and cert files are present; ignoring "
                            "key and cert files (client-url %s)", u)
            if info.client_cert_auth:
                log.warning("scheme is HTTP while --client-cert-auth is enabled; ignoring "
                            "client cert auth for this URL (client-url %s)", u)
        elif info.empty():
            raise TLSConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided "
                                 f"for client url {u} with HTTPS scheme")
        else:
            secure = True
    if not secure:
        return None
    info.server_context()        # fail now, not in every worker, on bad files
    if getattr(cfg, "grpc_engine", "") == "grpcio":
        if info.client_cert_auth:   # else the native front ends TLS, with the policy
            info.grpc_server_credentials()
        schemes: dict = {}
        for u in cfg.listen_client_urls:
            p = urlparse(u)
            schemes.setdefault((p.hostname, p.port), set()).add(p.scheme)
        for (host, port), s in schemes.items():
            if len(s) > 1:
                raise TLSConfigError(f"the grpcio engine cannot serve http and https on one "
                                     f"address ({host}:{port}); use the native engine")
    log.info("ClientTLS: %s", info)
    return info


def peer_info(cfg) -> TLSInfo:
    """The peer side's TLSInfo, after peer auto TLS (without files, peers dialled
    over https are verified with the trusted CA file or the system roots)."""
    info = TLSInfo(cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file,
                   cfg.peer_client_cert_auth, cfg.peer_crl_file,
                   skip_client_san_verify=cfg.experimental_peer_skip_client_san_verification,
                   allowed_cn=cfg.peer_cert_allowed_cn,
                   allowed_hostname=cfg.peer_cert_allowed_hostname,
                   client_cert_file=cfg.peer_client_cert_file,
                   client_key_file=cfg.peer_client_key_file, **_policy(cfg))
    if cfg.peer_auto_tls and info.empty():
        auto = self_cert(os.path.join(cfg.data_dir, "fixtures", "peer"),
                         _hosts(cfg.listen_peer_urls), cfg.self_signed_cert_validity,
                         client_auth=True)
        info.cert_file, info.key_file, info.self_cert = auto.cert_file, auto.key_file, True
        info.trusted_ca_file, info.client_cert_auth = "", False
    elif cfg.peer_auto_tls:
        log.warning("ignoring peer auto TLS since certs given")
    for u in cfg.listen_peer_urls:
        p = urlparse(u)
        if p.scheme == "http":
            if not info.empty():
                log.warning("scheme is HTTP while key and cert files are present; ignoring "
                            "key and cert files (peer-url %s)", u)
            if info.client_cert_auth:
                log.warning("scheme is HTTP while --peer-client-cert-auth is enabled; "
                            "ignoring client cert auth for this URL (peer-url %s)", u)
        elif info.empty():
            raise TLSConfigError(f"cannot listen on TLS for {p.hostname}:{p.port}: KeyFile "
                                 "and CertFile are not presented")
    if not info.empty():
        info.server_context()
        log.info("peerTLS: %s", info)
    return info


# ---- accepting TLS connections ----

class TLSListener:
    """Accepts on ``sock`` (listening, any family) and serves each connection with
    ``protocol_factory`` once its TLS handshake has succeeded. ``on_reject(addr,
    error)`` hears of each failed handshake (default: an info line like etcd's)."""

    def __init__(self, sock: socket.socket, ssl_context: ssl.SSLContext,
                 protocol_factory: Callable, *, allow_plaintext: bool = False,
                 handshake_timeout: float = 10.0,
                 on_reject: Optional[Callable[[tuple, str], None]] = None,
                 raw_route: Optional[Callable[[list], Optional[Callable]]] = None):
        """``raw_route(alpn)`` may claim a connection before TLS ends here: given
        the protocols its ClientHello offers, it returns ``take(sock)`` (a
        coroutine function that serves the still-encrypted socket) or None."""
        sock.setblocking(False)
        self._raw_route = raw_route
        self.sockets = [sock]
        self._ctx = ssl_context
        self._factory = protocol_factory
        self._plain_ok = allow_plaintext
        self._timeout = handshake_timeout
        self._on_reject = on_reject or _log_reject
        self._pending: set = set()
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:   # EMFILE and the like: do not spin
                log.warning("accept on %s failed: %s", sock.getsockname(), e)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve(conn, addr))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket, addr) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            ctx = self._ctx
            if self._plain_ok:
                first = await asyncio.wait_for(_peek(loop, conn), self._timeout)
                if not first:
                    conn.close()
                    return
                if first[0] != TLS_RECORD_HANDSHAKE:
                    ctx = None
            if ctx is not None and self._raw_route is not None:
                hello = await asyncio.wait_for(_peek_record(loop, conn), self._timeout)
                take = self._raw_route(client_hello_alpn(hello))
                if take is not None:
                    await take(conn)
                    return
            if ctx is None:
                await loop.connect_accepted_socket(self._factory, sock=conn)
            else:
                factory = self._factory
                check = getattr(ctx, "peer_check", None)   # kvcore/tls_policy.py
                if check is not None:
                    factory = lambda: _Checked(self._factory, check,  # noqa: E731
                                               lambda e: self._on_reject(addr, e))
                await loop.connect_accepted_socket(factory, sock=conn, ssl=ctx,
                                                   ssl_handshake_timeout=self._timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, asyncio.TimeoutError, EOFError) as e:
            conn.close()
            self._on_reject(addr, reason(e) if not isinstance(e, asyncio.TimeoutError)
                            else "TLS handshake timeout")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for t in list(self._pending):
            t.cancel()
        for s in self.sockets:
            s.close()

    async def wait_closed(self) -> None:
        return None


class _Checked(asyncio.Protocol):
    """Stands in for the real protocol until the client certificate has passed the
    policy check, then hands the transport over (or closes it)."""

    def __init__(self, factory, check, reject):
        self._factory, self._check, self._reject = factory, check, reject

    def connection_made(self, transport) -> None:
        err = self._check(transport.get_extra_info("peercert"))
        if err:
            self._reject(err)
            transport.abort()
            return
        proto = self._factory()
        transport.set_protocol(proto)
        proto.connection_made(transport)


async def _peek(loop, conn: socket.socket) -> bytes:
    """The first byte a client sends, left in the socket for whoever reads next."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        fut = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            loop.remove_reader(conn.fileno())


async def _peek_record(loop, conn: socket.socket) -> bytes:
    """The client's first TLS record (its ClientHello), left in the socket."""
    if not await _peek(loop, conn):
        return b""
    data = b""
    for _ in range(2000):
        try:
            data = conn.recv(16384 + 5, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
            break
        await asyncio.sleep(0.005)     # the rest of the record is on its way
    return data


def client_hello_alpn(record: bytes) -> list:
    """The ALPN protocols a TLS ClientHello record offers ([] if none or unreadable)."""
    try:
        if record[0] != TLS_RECORD_HANDSHAKE or record[5] != 1:
            return []
        i = 5 + 4 + 2 + 32                       # handshake header, version, random
        i += 1 + record[i]                       # session id
        i += 2 + int.from_bytes(record[i:i + 2], "big")    # cipher suites
        i += 1 + record[i]                       # compression methods
        end = i + 2 + int.from_bytes(record[i:i + 2], "big")
        i += 2
        while i + 4 <= end:
            kind = int.from_bytes(record[i:i + 2], "big")
            size = int.from_bytes(record[i + 2:i + 4], "big")
            if kind == 16:                       # application_layer_protocol_negotiation
                body, out, j = record[i + 6:i + 4 + size], [], 0
                while j < len(body):
                    out.append(body[j + 1:j + 1 + body[j]].decode("latin-1"))
                    j += 1 + body[j]
                return out
            i += 4 + size
    except IndexError:
        pass
    return []


def _log_reject(addr, error: str) -> None:
    host = addr[0] if isinstance(addr, tuple) else addr
    port = addr[1] if isinstance(addr, tuple) and len(addr) > 1 else ""
    log.info('rejected connection from "%s:%s" (error "%s")', host, port, error)


def listen_socket(host: str, port: int, reuse_port: bool = False,
                  backlog: int = 1024) -> socket.socket:
    """A listening TCP socket as asyncio's create_server makes one."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    fam, type_, proto, _, addr = infos[0]
    s = socket.socket(fam, type_, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(addr)
        s.listen(backlog)
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


# ---- peer certificate SAN check (etcd's checkSAN on peer listeners) ----

async def check_cert_san(peercert: dict, remote_host: str) -> Optional[str]:
    """None if the client certificate names ``remote_host`` (an IP SAN equal to it,
    or a DNS SAN resolving to it) or names no host at all; else etcd's error."""
    sans = peercert.get("subjectAltName", ()) if peercert else ()
    ips = [v for k, v in sans if k == "IP Address"]
    names = [v for k, v in sans if k == "DNS"]
    if not ips and not names:
        return None
    try:
        remote = ipaddress.ip_address(remote_host)
    except ValueError:
        remote = None
    if ips:
        for v in ips:
            try:
                if ipaddress.ip_address(v.strip()) == remote:
                    return None
            except ValueError:
                continue
        if not names:
            return (f"x509: certificate is valid for {', '.join(i.strip() for i in ips)}, "
                    f"not {remote_host}")
    loop = asyncio.get_running_loop()
    for name in names:
        if name.startswith("*."):
            continue
        try:
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for info in infos:
            try:
                if ipaddress.ip_address(info[4][0]) == remote:
                    return None
            except ValueError:
                continue
    return f'tls: "{remote_host}" does not match any of DNSNames {names}'
