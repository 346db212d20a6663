"""/v2/auth/... and the access checks of /v2/keys, as etcd 3.4's v2http serves
them (client_auth.go): Basic auth (or, with --client-cert-auth and no
Authorization header, the client certificate's CN) names the user; the root
role may do everything, the guest role is an unauthenticated caller's.

``Caller`` is what a request brings (its Authorization header, its certificate
CN, whether the member checks client certificates); ``serve`` answers one
/v2/auth request as (status, headers, body).
"""
from __future__ import annotations

import base64
import binascii
import json
import posixpath
from dataclasses import dataclass
from typing import Optional

from kvcore.gateway.codec import dumps
from kvcore.v2store.auth import (GUEST, ROOT, AuthError, AuthStore, has_key_access,
                                 role_json, user_json)
from kvcore.v2store.errors import V2Error

PREFIX = "/v2/auth"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


@dataclass
class Caller:
    authorization: str = ""
    common_name: str = ""
    client_cert_auth: bool = False


def parse_basic(header: str) -> Optional[tuple[str, str]]:
    """Go's Request.BasicAuth."""
    if len(header) < 6 or header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:], validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    if ":" not in raw:
        return None
    user, _, password = raw.partition(":")
    return user, password


async def _basic_user(store: AuthStore, caller: Caller) -> Optional[dict]:
    parsed = parse_basic(caller.authorization)
    if parsed is None:
        return None
    try:
        user = store.get_user(parsed[0])
    except AuthError:
        return None
    return user if await store.check_password(user, parsed[1]) else None


def _cert_user(store: AuthStore, caller: Caller) -> Optional[dict]:
    if not caller.common_name:
        return None
    try:
        return store.get_user(caller.common_name)
    except AuthError:
        return None


async def root_access(store: AuthStore, caller: Caller) -> bool:
    if not store.enabled():
        return True
    if not caller.authorization and caller.client_cert_auth:
        user = _cert_user(store, caller)
    else:
        user = await _basic_user(store, caller)
    return user is not None and ROOT in (user.get("roles") or ())


async def key_access(store: AuthStore, caller: Caller, key: str, recursive: bool,
                     write: bool, known_enabled: bool = False) -> bool:
    """etcd's hasKeyPrefixAccess for a /v2/keys request on ``key`` (``known_enabled``:
    the caller has just read the switch, which etcd reads once a request)."""
    if not known_enabled and not store.enabled():
        return True
    if not caller.authorization:
        user = _cert_user(store, caller) if caller.client_cert_auth else None
        if user is None:
            try:
                return has_key_access(store.get_role(GUEST), key, write)
            except AuthError:
                return False
    else:
        user = await _basic_user(store, caller)
        if user is None:
            return False
    for name in user.get("roles") or ():
        try:
            role = store.get_role(name)
        except AuthError:
            continue
        if has_key_access(role, key, write, recursive):
            return True
    return False


# ---- answers ----

def _http_error(status: int, message: str, headers: list) -> tuple:
    return status, headers + [("Content-Type", _JSON)], dumps({"message": message})


def _not_allowed(allowed: str) -> tuple:
    return 405, [("Allow", allowed), ("Content-Type", _TEXT),
                 ("X-Content-Type-Options", "nosniff")], b"Method Not Allowed\n"


NO_AUTH = (401, [("Content-Type", _JSON)], dumps({"message": "Insufficient credentials"}))
_NO_PAGE = (404, [("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff")],
            b"404 page not found\n")


def _error(err: Exception, headers: list) -> tuple:
    if isinstance(err, AuthError):
        return _http_error(err.status, err.message, headers)
    if isinstance(err, V2Error):
        return err.status, headers + [("Content-Type", _JSON),
                                      ("X-Etcd-Index", str(err.index))], err.body()
    raise err


def _decode(body: bytes, fields: dict) -> Optional[dict]:
    """Go's json.Decoder.Decode of the first value into a struct: field names
    match case-insensitively, unknown ones are ignored, a wrong type fails."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(body.decode("utf-8").lstrip())
    except (ValueError, UnicodeDecodeError):
        return None
    out = {k: None for k in fields}
    if obj is None:
        return out
    if not isinstance(obj, dict):
        return None
    for k, v in obj.items():
        name = next((f for f in fields if f.lower() == k.lower()), None)
        if name is None or v is None:
            continue
        if not fields[name](v):
            return None
        out[name] = v
    return out


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) or x is None for x in v)


def _is_perms(v) -> bool:
    if not isinstance(v, dict):
        return False
    kv = next((x for k, x in v.items() if k.lower() == "kv"), None)
    if kv is None:
        return True
    return isinstance(kv, dict) and all(
        x is None or _is_strs(x) for k, x in kv.items() if k.lower() in ("read", "write"))


def _perms(v) -> Optional[dict]:
    if v is None:
        return None
    kv = next((x for k, x in v.items() if k.lower() == "kv"), None) or {}
    pick = {k.lower(): x for k, x in kv.items()}
    return {"kv": {"read": pick.get("read"), "write": pick.get("write")}}


_USER_FIELDS = {"user": _is_str, "password": _is_str, "roles": _is_strs, "grant": _is_strs,
                "revoke": _is_strs}
_ROLE_FIELDS = {"role": _is_str, "permissions": _is_perms, "grant": _is_perms,
                "revoke": _is_perms}


def _encode(doc) -> bytes:
    return dumps(doc) + b"\n"      # json.NewEncoder(w).Encode


async def serve(store: AuthStore, caller: Caller, method: str, path: str, body: bytes,
                cluster_id: str) -> tuple:
    if path in (PREFIX + "/roles", PREFIX + "/users") or path.startswith(
            (PREFIX + "/roles/", PREFIX + "/users/")):
        pieces = posixpath.normpath(path[len(PREFIX):]).split("/")
        if len(pieces) == 2:
            return await _base(store, caller, method, pieces[1], cluster_id)
        if len(pieces) != 3:
            return _http_error(400, "Invalid path", [])
        one = _for_role if pieces[1] == "roles" else _for_user
        return await one(store, caller, method, pieces[2], body, cluster_id)
    if path == PREFIX + "/enable":
        return await _enable(store, caller, method, cluster_id)
    return _NO_PAGE


async def _base(store, caller, method, what, cluster_id) -> tuple:
    if method != "GET":
        return _not_allowed("GET")
    if not await root_access(store, caller):
        return NO_AUTH
    hs = [("X-Etcd-Cluster-Id", cluster_id)]
    try:
        if what == "roles":
            return 200, hs + [("Content-Type", _JSON)], _encode(
                {"roles": [role_json(store.get_role(n)) for n in store.all_roles()]})
        users = []
        for name in store.all_users() or ():
            u = store.get_user(name)
            users.append(_with_roles(store, u, skip_missing=True))
        return 200, hs + [("Content-Type", _JSON)], _encode({"users": users or None})
    except (AuthError, V2Error) as err:
        return _error(err, hs)


def _with_roles(store: AuthStore, u: dict, skip_missing: bool) -> dict:
    roles = []
    for name in u.get("roles") or ():
        try:
            roles.append(role_json(store.get_role(name)))
        except AuthError:
            if not skip_missing:
                raise
    out = {"user": u["user"]}
    if roles:
        out["roles"] = roles
    return out


async def _for_role(store, caller, method, name, body, cluster_id) -> tuple:
    if method not in ("GET", "PUT", "DELETE"):
        return _not_allowed("GET,PUT,DELETE")
    if not await root_access(store, caller):
        return NO_AUTH
    hs = [("X-Etcd-Cluster-Id", cluster_id)]
    ok = hs + [("Content-Type", _JSON)]
    try:
        if method == "GET":
            return 200, ok, _encode(role_json(store.get_role(name)))
        if method == "DELETE":
            await store.delete_role(name)
            return 200, ok, b""
        doc = _decode(body, _ROLE_FIELDS)
        if doc is None:
            return _http_error(400, "Invalid JSON in request body.", hs)
        role = {"role": doc["role"] or "", "permissions": _perms(doc["permissions"]),
                "grant": _perms(doc["grant"]), "revoke": _perms(doc["revoke"])}
        if role["role"] != name:
            return _http_error(400, "Role JSON name does not match the name in the URL", hs)
        if _empty(role["grant"]) and _empty(role["revoke"]):
            await store.create_role(role)
            return 201, ok, _encode(role_json(role))
        if not _empty(role["permissions"]):
            return _http_error(400, "Role JSON contains both permissions and grant/revoke", hs)
        return 200, ok, _encode(role_json(await store.update_role(role)))
    except (AuthError, V2Error) as err:
        return _error(err, hs)


def _empty(p: Optional[dict]) -> bool:
    return p is None or not (p["kv"]["read"] or p["kv"]["write"])


async def _for_user(store, caller, method, name, body, cluster_id) -> tuple:
    if method not in ("GET", "PUT", "DELETE"):
        return _not_allowed("GET,PUT,DELETE")
    if not await root_access(store, caller):
        return NO_AUTH
    hs = [("X-Etcd-Cluster-Id", cluster_id)]
    ok = hs + [("Content-Type", _JSON)]
    try:
        if method == "GET":
            return 200, ok, _encode(_with_roles(store, store.get_user(name), False))
        if method == "DELETE":
            await store.delete_user(name)
            return 200, ok, b""
        doc = _decode(body, _USER_FIELDS)
        if doc is None:
            return _http_error(400, "Invalid JSON in request body.", hs)
        u = {"user": doc["user"] or "", "password": doc["password"] or "",
             "roles": doc["roles"], "grant": doc["grant"], "revoke": doc["revoke"]}
        if u["user"] != name:
            return _http_error(400, "User JSON name does not match the name in the URL", hs)
        created = False
        if not u["grant"] and not u["revoke"]:
            if u["roles"]:
                out = await store.create_user(u)
            else:
                out, created = await store.create_or_update_user(u)
        else:
            if u["roles"]:
                return _http_error(400, "User JSON contains both roles and grant/revoke", hs)
            out = await store.update_user(u)
        return (201 if created else 200), ok, _encode(user_json(out, with_password=False))
    except (AuthError, V2Error) as err:
        return _error(err, hs)


async def _enable(store, caller, method, cluster_id) -> tuple:
    if method not in ("GET", "PUT", "DELETE"):
        return _not_allowed("GET,PUT,DELETE")
    if method != "GET" and not await root_access(store, caller):
        return NO_AUTH
    hs = [("X-Etcd-Cluster-Id", cluster_id)]
    ok = hs + [("Content-Type", _JSON)]
    enabled = store.enabled()
    try:
        if method == "GET":
            return 200, ok, _encode({"enabled": enabled})
        if method == "PUT":
            await store.enable()
        else:
            await store.disable()
        return 200, ok, b""
    except (AuthError, V2Error) as err:
        return _error(err, hs)
