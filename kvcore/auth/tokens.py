"""etcd's auth token providers (server/auth/simple_token.go, jwt.go, options.go).

``--auth-token`` picks one: ``simple`` (the default) or
``jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m``.

Both are assigned the way etcd assigns them: the Authenticate request is a Raft
proposal and every member runs ``assign`` when it applies it, so a token issued
through one member is known to all of them.

* simple: ``<16 random letters>.<index of the Authenticate entry>``. The letters
  (the "prefix") are drawn by the member that proposes and travel in the entry;
  each member keeps the token in memory for ``--auth-token-ttl`` seconds after its
  last use *there*. A member asked about a token whose index it has not applied yet
  waits until it has (``pending_index``), as etcd's indexWaiter does.
* jwt: a signed JWT with claims username, revision (the auth revision when it was
  issued) and exp. Nothing is kept: every member with the same keys verifies it.

``info(token, revision) -> (user, auth revision) | None``: None means etcd's
``etcdserver: invalid auth token``.
"""
from __future__ import annotations

import logging
import re
import secrets
import string
import time
from typing import Optional

from kvcore import logs

log = logging.getLogger("kvcore.auth")

INVALID_OPTS = "auth: invalid auth options"
INVALID_METHOD = "auth: invalid auth signature method"
MISSING_KEY = "auth: missing key data"
KEY_MISMATCH = "auth: public and private keys don't match"
VERIFY_ONLY = "auth: token signing attempted with verify-only key"

_KNOWN_OPTS = ("sign-method", "pub-key", "priv-key", "ttl")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class TokenConfigError(ValueError):
    """--auth-token cannot be used (the message is etcd's)."""


class SimpleTokens:
    """Tokens in memory, each with a deadline pushed back by every use."""

    kind = "simple"

    SWEEP_EVERY = 1.0   # etcd's simple-token keeper runs every second

    def __init__(self, ttl: float = 300.0):
        self.ttl = ttl
        self._tokens: dict[str, tuple[str, float]] = {}
        self._swept = time.monotonic()

    def prefix(self) -> str:
        return "".join(secrets.choice(string.ascii_letters) for _ in range(16))

    def assign(self, user: str, revision: int, prefix: str, index: int) -> str:
        tok = f"{prefix}.{index}"
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_EVERY:   # forget tokens nobody used in time
            self._swept = now
            for t in [t for t, (_, dl) in self._tokens.items() if dl < now]:
                self._expire(t)
        self._tokens[tok] = (user, now + self.ttl)
        return tok

    def __len__(self) -> int:
        return len(self._tokens)

    def info(self, token: str, revision: int) -> Optional[tuple[str, int]]:
        ent = self._tokens.get(token)
        if ent is None:
            return None
        now = time.monotonic()
        if ent[1] < now:
            self._expire(token)
            return None
        self._tokens[token] = (ent[0], now + self.ttl)
        return ent[0], revision

    def reuse_for(self, token: str) -> float:
        """Seconds a worker may reuse what ``info`` said of this token without asking
        again: short against the TTL, since only asking pushes the deadline back."""
        return min(1.0, self.ttl / 4)

    def _expire(self, token: str) -> None:
        user, _ = self._tokens.pop(token)
        log.info("deleted a simple token", extra=logs.fields(user_name=user, token=token))

    @staticmethod
    def pending_index(token: str) -> Optional[int]:
        """The log index a well-formed simple token was assigned at (etcd's
        isValidSimpleToken: exactly one '.' followed by an unsigned integer)."""
        parts = token.split(".")
        if len(parts) != 2 or not parts[1].isdigit():
            return None
        return int(parts[1])

    def invalidate_user(self, user: str) -> None:
        for t in [t for t, (u, _) in self._tokens.items() if u == user]:
            del self._tokens[t]

    def clear(self) -> None:
        self._tokens.clear()


class JWTTokens:
    """Stateless signed tokens (pyjwt + cryptography). Verified tokens are cached
    (token -> user, revision, exp; bounded) because verifying costs 0.05-0.2 ms of
    the core's single thread per request."""

    kind = "jwt"
    CACHE = 4096

    def __init__(self, sign_method: str, key, verify_key, ttl: float, verify_only: bool):
        self.method = sign_method
        self._key = key
        self._verify_key = verify_key
        self.ttl = ttl
        self.verify_only = verify_only
        self._verified: dict[str, tuple[str, int, float]] = {}

    def prefix(self) -> str:
        return ""

    def assign(self, user: str, revision: int, prefix: str, index: int) -> str:
        import jwt
        if self.verify_only:
            raise TokenConfigError(VERIFY_ONLY)
        claims = {"username": user, "revision": revision,
                  "exp": int(time.time() + self.ttl)}
        return jwt.encode(claims, self._key, algorithm=self.method)

    def info(self, token: str, revision: int) -> Optional[tuple[str, int]]:
        hit = self._verified.get(token)
        if hit is not None:
            if hit[2] is None or time.time() < hit[2]:
                return hit[0], hit[1]
            del self._verified[token]
            return None
        import jwt
        try:
            # etcd refuses a token signed with any other method than its own.
            claims = jwt.decode(token, self._verify_key, algorithms=[self.method],
                                options={"require": ["username", "revision"]})
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return None
        user, rev = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or not isinstance(rev, (int, float)):
            return None
        exp = claims.get("exp")
        if len(self._verified) >= self.CACHE:
            self._verified.clear()
        self._verified[token] = (user, int(rev), float(exp) if exp is not None else None)
        return user, int(rev)

    def reuse_for(self, token: str) -> float:
        """Seconds a worker may reuse what ``info`` said of this token: up to its
        expiry, at most a second."""
        hit = self._verified.get(token)
        if hit is None or hit[2] is None:
            return 1.0
        return max(0.0, min(1.0, hit[2] - time.time()))

    @staticmethod
    def pending_index(token: str) -> Optional[int]:
        return None

    def invalidate_user(self, user: str) -> None:
        pass

    def clear(self) -> None:
        pass


def parse_options(spec: str) -> tuple[str, dict]:
    """etcd's decomposeOpts: "type,k=v,k=v" (a repeated key or a pair without
    exactly one '=' is invalid)."""
    parts = spec.split(",")
    opts: dict = {}
    for p in parts[1:]:
        kv = p.split("=")
        if len(kv) != 2 or kv[0] in opts:
            raise TokenConfigError(INVALID_OPTS)
        opts[kv[0]] = kv[1]
    return parts[0], opts


def provider(spec: str, simple_ttl: float):
    """The token provider ``--auth-token`` names (TokenConfigError when etcd would
    refuse to start)."""
    kind, opts = parse_options(spec)
    if kind == "simple":
        return SimpleTokens(simple_ttl)
    if kind == "jwt":
        return _jwt_provider(opts)
    raise TokenConfigError(INVALID_OPTS)


def _go_duration(s: str) -> float:
    parts = _DURATION.findall(s)
    if not s or "".join(a + b for a, b in parts) != s:
        raise TokenConfigError(INVALID_OPTS)
    return sum(float(a) * _UNITS[b] for a, b in parts)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        raise TokenConfigError(INVALID_OPTS) from None


_FAMILIES = {"RS": "rsa", "PS": "rsa", "ES": "ec", "Ed": "ed", "HS": "hmac"}
SIGN_METHODS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512")


def _jwt_provider(opts: dict) -> JWTTokens:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    ttl = _go_duration(opts["ttl"]) if opts.get("ttl") else 300.0
    pub = _read(opts["pub-key"]) if opts.get("pub-key") else b""
    priv = _read(opts["priv-key"]) if opts.get("priv-key") else b""
    method = opts.get("sign-method", "")
    if method not in SIGN_METHODS:
        raise TokenConfigError(INVALID_OPTS)   # etcd: ErrInvalidAuthMethod, reported so
    family = _FAMILIES[method[:2]]
    if family == "hmac":
        if not priv:
            raise TokenConfigError(MISSING_KEY)
        return JWTTokens(method, priv, priv, ttl, verify_only=False)
    kinds = {"rsa": (rsa.RSAPrivateKey, rsa.RSAPublicKey),
             "ec": (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey),
             "ed": (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)}[family]
    priv_key = pub_key = None
    try:
        if priv:
            priv_key = serialization.load_pem_private_key(priv, password=None)
        if pub:
            pub_key = _load_public(pub, family)
    except (ValueError, TypeError) as e:
        raise TokenConfigError(f"{INVALID_OPTS}: {e}") from None
    if (priv_key is not None and not isinstance(priv_key, kinds[0])) or (
            pub_key is not None and not isinstance(pub_key, kinds[1])):
        raise TokenConfigError(f"{INVALID_OPTS}: the key does not fit {method}")
    if priv_key is None:
        if pub_key is None:
            raise TokenConfigError(MISSING_KEY)
        return JWTTokens(method, None, pub_key, ttl, verify_only=True)
    if pub_key is not None and _public_bytes(pub_key) != _public_bytes(priv_key.public_key()):
        raise TokenConfigError(KEY_MISMATCH)
    return JWTTokens(method, priv_key, priv_key.public_key(), ttl, verify_only=False)


def _load_public(pem: bytes, family: str):
    """A PEM public key or, for RSA and ECDSA, a certificate holding one (jwt-go's
    Parse{RSA,EC}PublicKeyFromPEM take either; etcd's e2e suite gives server.crt)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        return serialization.load_pem_public_key(pem)
    except ValueError:
        if family not in ("rsa", "ec") or b"-----BEGIN CERTIFICATE-----" not in pem:
            raise
        return x509.load_pem_x509_certificate(pem).public_key()


def _public_bytes(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
