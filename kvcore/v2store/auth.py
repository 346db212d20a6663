"""etcd 3.4's v2 auth store (etcdserver/api/v2auth): users, roles, the root user
and role, the guest role and the enabled switch, kept as JSON values in the v2
store under /2 (the store's "auth" tree), written and read through the same
requests etcd makes, so indexes, errors and messages come out as etcd's.

``AuthStore(do)``: ``await do(request)`` runs one v2 store request (made by
``kvcore.v2store.http.request``) on the auth tree and returns the event dict,
or raises V2Error; the service proposes writes through Raft and reads locally.
Users and roles are plain dicts shaped as etcd's JSON (``None`` where Go has a
nil slice, which it writes as null).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import posixpath
from typing import Awaitable, Callable, Optional

import bcrypt

from kvcore.v2store import errors as e
from kvcore.v2store.errors import V2Error
from kvcore.v2store.http import request

log = logging.getLogger("kvcore.v2auth")

PREFIX = "/2"
ROOT, GUEST = "root", "guest"
_ALL = {"kv": {"read": ["/*"], "write": ["/*"]}}
ROOT_ROLE = {"role": ROOT, "permissions": _ALL, "grant": None, "revoke": None}
GUEST_ROLE = {"role": GUEST, "permissions": _ALL, "grant": None, "revoke": None}
BCRYPT_COST = 10            # Go's bcrypt.DefaultCost, which etcd's v2 auth uses


class AuthError(Exception):
    """etcd's v2auth.Error: an HTTP status and "auth: ..." message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _auth_err(status: int, msg: str) -> AuthError:
    return AuthError(status, "auth: " + msg)


def _values(s: set) -> list:
    """etcd's sorted set Values() ([] when empty)."""
    return sorted(s)


# ---- JSON: what Go's encoding/json makes of a user or role ----

def user_json(u: dict, with_password: bool = True) -> dict:
    d = {"user": u["user"]}
    if with_password and u.get("password"):
        d["password"] = u["password"]
    d["roles"] = u.get("roles")
    for k in ("grant", "revoke"):
        if u.get(k):
            d[k] = u[k]
    return d


def perms_json(p: Optional[dict]) -> dict:
    kv = (p or {}).get("kv") or {}
    return {"kv": {"read": kv.get("read"), "write": kv.get("write")}}


def role_json(r: dict) -> dict:
    d = {"role": r["role"], "permissions": perms_json(r.get("permissions"))}
    for k in ("grant", "revoke"):
        if r.get(k) is not None:
            d[k] = perms_json(r[k])
    return d


class AuthStore:
    def __init__(self, do: Callable[[dict], Awaitable[dict]],
                 read: Callable[[str], Optional[dict]]):
        """``do`` runs a store request; ``read(path)`` is a local GET of a node
        (None when missing), counted in the store's stats as etcd's GET is."""
        self._do = do
        self._read = read
        self._ensured = False
        self._checked: dict = {}        # sha256(hash, password) -> bool (bcrypt is slow)

    # ---- the switch ----

    def enabled(self) -> bool:
        raw = self._value(PREFIX + "/enabled")
        try:
            return raw is not None and json.loads(raw) is True
        except ValueError:
            return False

    async def enable(self) -> None:
        if self.enabled():
            raise _auth_err(409, "already enabled")
        try:
            await self.get_user_quorum(ROOT)
        except AuthError:
            raise _auth_err(409, "No root user available, please create one") from None
        try:
            await self.get_role_quorum(GUEST)
        except AuthError:
            log.info("no guest role access found; creating default")
            await self.create_role(dict(GUEST_ROLE))
        await self._set("/enabled", True, True)
        log.info("enabled auth")

    async def disable(self) -> None:
        if not self.enabled():
            raise _auth_err(409, "already disabled")
        await self._set("/enabled", False, True)
        log.info("disabled auth")

    # ---- users ----

    def all_users(self) -> Optional[list]:
        names = self._list("/users/")
        return sorted(names) if names else None

    def get_user(self, name: str) -> dict:
        return self._user(name, self._value(f"{PREFIX}/users/{name}"))

    async def get_user_quorum(self, name: str) -> dict:
        """etcd's getUser(name, quorum=true): read through the log (a QGET), so a
        user just made through another member is seen."""
        return self._user(name, await self._quorum_value(f"{PREFIX}/users/{name}"))

    @staticmethod
    def _user(name: str, raw: Optional[str]) -> dict:
        if raw is None:
            raise _auth_err(404, f"User {name} does not exist.")
        u = _user_from(json.loads(raw))
        if u["user"] == ROOT:
            u = _attach_root(u)
        return u

    async def create_user(self, u: dict) -> dict:
        if u["user"] == ROOT:
            u = _attach_root(u)
        if not u.get("password"):
            raise _auth_err(400, f"Cannot create user {u['user']} with an empty password")
        u = dict(u, password=await self.hash_password(u["password"]))
        try:
            await self._set("/users/" + u["user"], user_json(u), False)
        except V2Error as err:
            if err.code == e.NODE_EXIST:
                raise _auth_err(409, f"User {u['user']} already exists.") from None
            raise
        log.info("created a user %s", u["user"])
        return u

    async def create_or_update_user(self, u: dict) -> tuple[dict, bool]:
        try:
            await self.get_user_quorum(u["user"])
        except AuthError:
            return await self.create_user(u), True
        return await self.update_user(u), False

    async def update_user(self, u: dict) -> dict:
        old = await self.get_user_quorum(u["user"])   # its own 404 (etcd's getUser error)
        new = {"user": old["user"], "password": old.get("password", "")}
        if u.get("password"):
            new["password"] = await self.hash_password(u["password"])
        roles = set(old.get("roles") or ())
        for g in u.get("grant") or ():
            if g in roles:
                raise _auth_err(409, f"Granting duplicate role {g} for user {u['user']}")
            roles.add(g)
        for r in u.get("revoke") or ():
            if r not in roles:
                raise _auth_err(409, f"Revoking ungranted role {r} for user {u['user']}")
            roles.discard(r)
        new["roles"] = _values(roles)
        if _user_from(user_json(new)) == _user_from(user_json(old)):
            raise _auth_err(400, "User not updated. Use grant/revoke/password to update "
                                 "the user.")
        await self._set("/users/" + u["user"], user_json(new), True)
        log.info("updated a user %s", u["user"])
        return new

    async def delete_user(self, name: str) -> None:
        if self.enabled() and name == ROOT:
            raise _auth_err(403, "Cannot delete root user while auth is enabled.")
        try:
            await self._delete("/users/" + name)
        except V2Error as err:
            if err.code == e.KEY_NOT_FOUND:
                raise _auth_err(404, f"User {name} does not exist") from None
            raise
        log.info("deleted a user %s", name)

    # ---- roles ----

    def all_roles(self) -> list:
        return sorted([ROOT] + self._list("/roles/"))

    def get_role(self, name: str) -> dict:
        if name == ROOT:
            return ROOT_ROLE
        return self._role(name, self._value(f"{PREFIX}/roles/{name}"))

    async def get_role_quorum(self, name: str) -> dict:
        """etcd's getRole(name, quorum=true)."""
        if name == ROOT:
            return ROOT_ROLE
        return self._role(name, await self._quorum_value(f"{PREFIX}/roles/{name}"))

    @staticmethod
    def _role(name: str, raw: Optional[str]) -> dict:
        if raw is None:
            raise _auth_err(404, f"Role {name} does not exist.")
        return _role_from(json.loads(raw))

    async def create_role(self, r: dict) -> None:
        if r["role"] == ROOT:
            raise _auth_err(403, f"Cannot modify role {ROOT}: is root role.")
        try:
            await self._set("/roles/" + r["role"], role_json(r), False)
        except V2Error as err:
            if err.code == e.NODE_EXIST:
                raise _auth_err(409, f"Role {r['role']} already exists.") from None
            raise
        log.info("created a new role %s", r["role"])

    async def update_role(self, r: dict) -> dict:
        if r["role"] == ROOT:
            raise _auth_err(403, f"Cannot modify role {ROOT}: is root role.")
        old = await self.get_role_quorum(r["role"])   # its own 404 (etcd's getRole error)
        kv = perms_json(old["permissions"])["kv"]
        if r.get("grant") is not None:
            kv = _grant(kv, perms_json(r["grant"])["kv"])
        if r.get("revoke") is not None:
            kv = _revoke(kv, perms_json(r["revoke"])["kv"])
        new = {"role": old["role"], "permissions": {"kv": kv}, "grant": None, "revoke": None}
        if role_json(new) == role_json(old):
            raise _auth_err(400, "Role not updated. Use grant/revoke to update the role.")
        await self._set("/roles/" + r["role"], role_json(new), True)
        log.info("updated a new role %s", r["role"])
        return new

    async def delete_role(self, name: str) -> None:
        if name == ROOT:
            raise _auth_err(403, f"Cannot modify role {ROOT}: is root role.")
        try:
            await self._delete("/roles/" + name)
        except V2Error as err:
            if err.code == e.KEY_NOT_FOUND:
                raise _auth_err(404, f"Role {name} doesn't exist.") from None
            raise
        log.info("delete a new role %s", name)

    # ---- passwords ----

    async def hash_password(self, password: str) -> str:
        salt = bcrypt.gensalt(BCRYPT_COST)
        h = await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)
        return h.decode()

    async def check_password(self, user: dict, password: str) -> bool:
        stored = (user.get("password") or "").encode()
        key = hashlib.sha256(stored + b"\0" + password.encode()).digest()
        ok = self._checked.get(key)
        if ok is None:
            try:
                ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), stored)
            except ValueError:        # not a bcrypt hash
                ok = False
            if len(self._checked) >= 4096:
                self._checked.clear()
            self._checked[key] = ok
        return ok

    # ---- the store requests etcd makes (auth_requests.go) ----

    async def _ensure_dirs(self) -> None:
        if self._ensured:
            return
        for res in (PREFIX, PREFIX + "/users/", PREFIX + "/roles/"):
            try:
                await self._do(request("PUT", res, is_dir=True, prev_exist=False))
            except V2Error as err:
                if err.code != e.NODE_EXIST:
                    raise
        try:
            await self._do(request("PUT", PREFIX + "/enabled", "false", prev_exist=False))
        except V2Error as err:
            if err.code != e.NODE_EXIST:
                raise
        self._ensured = True

    async def _set(self, res: str, value, prev_exist: bool) -> dict:
        await self._ensure_dirs()
        data = json.dumps(value, separators=(",", ":"))
        return await self._do(request("PUT", PREFIX + res, data, prev_exist=prev_exist))

    async def _delete(self, res: str) -> None:
        await self._ensure_dirs()
        await self._do(request("DELETE", f"{PREFIX}{res}", prev_exist=True))

    def _value(self, path: str) -> Optional[str]:
        node = self._read(path)
        return None if node is None else node.get("value")

    async def _quorum_value(self, path: str) -> Optional[str]:
        try:
            doc = await self._do(request("QGET", path))
        except V2Error as err:
            if err.code == e.KEY_NOT_FOUND:
                return None
            raise
        return doc["node"].get("value")

    def _list(self, res: str) -> list:
        node = self._read(PREFIX + res)
        return [posixpath.basename(n["key"]) for n in (node or {}).get("nodes", ())]


# ---- permissions (etcd's RWPermission) ----

def _grant(kv: dict, n: dict) -> dict:
    read, write = set(kv["read"] or ()), set(kv["write"] or ())
    for r in n["read"] or ():
        if r in read:
            raise _auth_err(409, f"Granting duplicate read permission {r}")
        read.add(r)
    for w in n["write"] or ():
        if w in write:
            raise _auth_err(409, f"Granting duplicate write permission {w}")
        write.add(w)
    return {"read": _values(read), "write": _values(write)}


def _revoke(kv: dict, n: dict) -> dict:
    read, write = set(kv["read"] or ()), set(kv["write"] or ())
    for r in n["read"] or ():
        read.discard(r)      # etcd logs an ungranted one and goes on
    for w in n["write"] or ():
        write.discard(w)
    return {"read": _values(read), "write": _values(write)}


def has_key_access(role: dict, key: str, write: bool, recursive: bool = False) -> bool:
    """etcd's HasKeyAccess / HasRecursiveAccess: "/foo*" is a prefix, else exact;
    a recursive request needs a prefix pattern."""
    if role["role"] == ROOT:
        return True
    kv = perms_json(role.get("permissions"))["kv"]
    for pat in (kv["write"] if write else kv["read"]) or ():
        if not pat:
            continue
        if pat.endswith("*"):
            if key.startswith(pat[:-1]):
                return True
        elif not recursive and key == pat:
            return True
    return False


def _attach_root(u: dict) -> dict:
    roles = list(u.get("roles") or ())
    if ROOT not in roles:
        roles.append(ROOT)
    return dict(u, roles=roles)


def _user_from(d: dict) -> dict:
    return {"user": d.get("user", ""), "password": d.get("password", ""),
            "roles": d.get("roles"), "grant": d.get("grant"), "revoke": d.get("revoke")}


def _role_from(d: dict) -> dict:
    return {"role": d.get("role", ""), "permissions": perms_json(d.get("permissions")),
            "grant": d.get("grant"), "revoke": d.get("revoke")}
