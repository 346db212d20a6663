"""Token providers (--auth-token), the caller stamp, and the auth-revision check."""
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kvcore.api import auth_pb2
from kvcore.auth import tokens
from kvcore.auth.caller import Caller, stamp, unstamp
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.auth.store import AuthStore
from kvcore.server.config import ConfigError, parse


def _pem(key, tmp_path, name):
    priv, pub = tmp_path / f"{name}.key", tmp_path / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


KEYS = {"RS": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "PS": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
        "Ed": ed25519.Ed25519PrivateKey.generate}


@pytest.mark.parametrize("method", tokens.SIGN_METHODS)
def test_every_sign_method_signs_and_verifies(method, tmp_path):
    if method.startswith("HS"):
        (tmp_path / "k").write_bytes(b"k" * 64)
        spec = f"jwt,priv-key={tmp_path / 'k'},sign-method={method},ttl=1m"
    else:
        key = KEYS.get(method, KEYS.get(method[:2]))()
        priv, pub = _pem(key, tmp_path, "k")
        spec = f"jwt,pub-key={pub},priv-key={priv},sign-method={method}"
    p = tokens.provider(spec, 300)
    tok = p.assign("alice", 7, "", 12)
    assert p.info(tok, 9) == ("alice", 7)        # the revision it was issued at
    assert jwt.get_unverified_header(tok)["alg"] == method
    assert p.info(tok[:-4] + "AAAA", 9) is None   # signature altered
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert 0 < claims["exp"] - time.time() <= (60 if method.startswith("HS") else 300)


def test_cached_jwt_still_expires(tmp_path, monkeypatch):
    key = KEYS["ES256"]()
    priv, pub = _pem(key, tmp_path, "k")
    p = tokens.provider(f"jwt,priv-key={priv},sign-method=ES256,ttl=30s", 300)
    tok = p.assign("a", 3, "", 1)
    assert p.info(tok, 3) == ("a", 3) and p.info(tok, 3) == ("a", 3)   # second: cached
    now = time.time()
    monkeypatch.setattr(tokens.time, "time", lambda: now + 31)
    assert p.info(tok, 3) is None


def test_jwt_expired_and_verify_only(tmp_path):
    key = KEYS["RS"]()
    priv, pub = _pem(key, tmp_path, "k")
    full = tokens.provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256", 300)
    old = jwt.encode({"username": "a", "revision": 2, "exp": int(time.time()) - 5},
                     key, algorithm="RS256")
    assert full.info(old, 3) is None
    verify = tokens.provider(f"jwt,pub-key={pub},sign-method=RS256", 300)
    assert verify.info(full.assign("a", 2, "", 1), 3) == ("a", 2)
    with pytest.raises(tokens.TokenConfigError, match="verify-only"):
        verify.assign("a", 2, "", 1)


@pytest.mark.parametrize("spec,msg", [
    ("bogus", "invalid auth options"),
    ("jwt,sign-method=RS256,sign-method=RS256", "invalid auth options"),
    ("jwt,sign-method", "invalid auth options"),
    ("jwt,sign-method=XX999", "invalid auth options"),
    ("jwt,sign-method=RS256", "missing key data"),
    ("jwt,sign-method=HS256", "missing key data"),
    ("jwt,sign-method=RS256,ttl=5 minutes", "invalid auth options"),
])
def test_bad_auth_token_options_are_refused(spec, msg):
    with pytest.raises(tokens.TokenConfigError, match=msg):
        tokens.provider(spec, 300)


def test_mismatched_keys_and_the_flag(tmp_path):
    priv, _ = _pem(KEYS["ES256"](), tmp_path, "a")
    _, pub = _pem(KEYS["ES256"](), tmp_path, "b")
    with pytest.raises(tokens.TokenConfigError, match="don't match"):
        tokens.provider(f"jwt,pub-key={pub},priv-key={priv},sign-method=ES256", 300)
    with pytest.raises(ConfigError, match="auth: invalid auth options"):
        parse(["--auth-token", "nope"], env={})
    assert parse(["--auth-token", f"jwt,priv-key={priv},sign-method=ES256"],
                 env={}).auth_token.startswith("jwt,")


def test_simple_tokens_name_their_index_and_expire():
    p = tokens.SimpleTokens(ttl=0.05)
    tok = p.assign("bob", 4, p.prefix(), 42)
    assert tok.endswith(".42") and len(tok) == 19
    assert p.pending_index(tok) == 42
    assert p.pending_index("no-dot") is None and p.pending_index("a.b.3") is None
    assert p.info(tok, 9) == ("bob", 9)   # a simple token is always current
    time.sleep(0.1)
    assert p.info(tok, 9) is None


def test_unused_simple_tokens_are_forgotten():
    p = tokens.SimpleTokens(ttl=0.05)
    p.SWEEP_EVERY = 0.0
    for i in range(100):
        p.assign("u", 1, p.prefix(), i)
    time.sleep(0.1)
    p.assign("u", 1, p.prefix(), 100)   # the sweep runs with the next assignment
    assert len(p) == 1


def test_stamp_roundtrip_and_old_revision_refused_at_check():
    c = Caller("ünïcode-user", 17)
    back, op, payload = unstamp(stamp(c, 3, b"\x0a\x01k"))
    assert (back, back.rev, op, payload) == ("ünïcode-user", 17, 3, b"\x0a\x01k")

    store = AuthStore()
    store.enabled, store.revision = True, 5
    role = auth_pb2.Role(name=b"rw")
    role.keyPermission.add(key=b"k", permType=auth_pb2.Permission.READWRITE)
    store.roles = {"rw": role}
    store.users = {"alice": auth_pb2.User(name=b"alice", roles=["rw"])}
    store.check_range(Caller("alice", 5), b"k", b"", auth_pb2.Permission.WRITE)
    with pytest.raises(GrpcError) as e:   # checked at 4, the store moved on to 5
        store.check_range(Caller("alice", 4), b"k", b"", auth_pb2.Permission.WRITE)
    assert (e.value.code, e.value.message) == (StatusCode.UNKNOWN,
                                               "auth: revision in header is old")
