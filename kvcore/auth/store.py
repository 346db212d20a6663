"""etcd's v3 auth store (server/auth/store.go, range_perm_cache.go, simple_token.go).

State (in the LMDB backend's ``auth`` database, so it is in snapshots and survives
a restart; changed only by applying committed proposals):
  b"enabled"        b"\\x01" or b"\\x00"
  b"authRevision"   u64, bumped by every change (AuthStatus reports it)
  b"user/" + name   authpb.User bytes (password: a bcrypt hash)
  b"role/" + name   authpb.Role bytes (permissions sorted by key, as etcd keeps them)

The core keeps a copy in memory (``AuthStore``), reloaded whenever the backend is
(re)opened. Tokens come from the provider ``--auth-token`` names
(kvcore/auth/tokens.py); Authenticate is applied on every member, so a token is
valid on all of them.

Permission checks follow etcd: root (a user with the root role) may do anything;
another user needs a role whose READ (reads) or WRITE (writes) permissions cover
the whole key or range asked for, as etcd's interval tree decides (kvcore/auth/permtree.py).
A caller authenticated at an older auth revision
than the store's (a JWT issued before a change, or a request checked before a
change applied ahead of it) gets etcd's ErrAuthOldRevision.
"""
from __future__ import annotations

import bisect
from typing import Optional

from kvcore.api import auth_pb2, rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.auth.permtree import UserPerms
from kvcore.auth.tokens import SimpleTokens, TokenConfigError
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.mvcc.gosort import go_sort
from kvcore.storage.backend import from_u64, named_key, u64

ROOT = "root"
_ENABLED = b"enabled"
_REVISION = b"authRevision"
_USER = b"user/"
_ROLE = b"role/"
READ, WRITE, READWRITE = (auth_pb2.Permission.READ, auth_pb2.Permission.WRITE,
                          auth_pb2.Permission.READWRITE)


def stored_state(txn, backend) -> tuple[bool, int]:
    """(enabled, auth revision) as ``txn`` sees them."""
    rev = txn.get(_REVISION, db=backend.auth)
    # etcd starts its store at revision 1
    return txn.get(_ENABLED, db=backend.auth) == b"\x01", from_u64(rev) if rev else 1


class AuthStore:
    def __init__(self, tokens=None):
        self.enabled = False
        self.revision = 0
        self.users: dict[str, auth_pb2.User] = {}
        self.roles: dict[str, auth_pb2.Role] = {}
        self.on_change = None    # called after an applied change (enabled may differ)
        self.tokens = tokens if tokens is not None else SimpleTokens()
        self.apply_index = 0     # the log index being applied (simple tokens name it)
        self._perm_cache: dict = {}

    # ---- loading and saving ----

    def load(self, backend) -> None:
        with backend.begin_read() as txn:
            self.load_from(txn, backend)

    def load_from(self, txn, backend) -> None:
        """The store as ``txn`` (a read transaction of ``backend``) sees it."""
        self.backend = backend
        self.users, self.roles = {}, {}
        self.enabled, self.revision = stored_state(txn, backend)
        for k, v in txn.cursor(db=backend.auth):
            # The name from the record: a long one's key is its hash (named_key).
            if k.startswith(_USER):
                u = auth_pb2.User.FromString(v)
                self.users[u.name.decode()] = u
            elif k.startswith(_ROLE):
                r = auth_pb2.Role.FromString(v)
                self.roles[r.name.decode()] = r
        self._perm_cache = {}

    def _bump(self, txn) -> None:
        self.revision += 1
        txn.put(_REVISION, u64(self.revision), db=self.backend.auth)
        self._perm_cache = {}

    def _put_user(self, txn, u: auth_pb2.User) -> None:
        name = u.name.decode()
        self.users[name] = u
        txn.put(named_key(_USER, u.name), u.SerializeToString(), db=self.backend.auth)

    def _put_role(self, txn, r: auth_pb2.Role) -> None:
        self.roles[r.name.decode()] = r
        txn.put(named_key(_ROLE, r.name), r.SerializeToString(), db=self.backend.auth)

    def _user(self, name: str) -> auth_pb2.User:
        u = self.users.get(name)
        if u is None:
            raise etcd_error(EtcdError.USER_NOT_FOUND)
        return u

    def _role(self, name: str) -> auth_pb2.Role:
        r = self.roles.get(name)
        if r is None:
            raise etcd_error(EtcdError.ROLE_NOT_FOUND)
        return r

    # ---- applying committed changes: (method name, request) -> response message ----

    def apply(self, txn, name: str, req: bytes):
        resp = getattr(self, "_apply_" + name)(txn, req)
        if self.on_change is not None:
            self.on_change()
        return resp

    def _apply_AuthEnable(self, txn, req):
        if self.enabled:
            return rpc_pb2.AuthEnableResponse()
        root = self.users.get(ROOT)
        if root is None:
            raise etcd_error(EtcdError.ROOT_USER_NOT_EXIST)
        if ROOT not in root.roles:
            raise etcd_error(EtcdError.ROOT_ROLE_NOT_EXIST)
        self.enabled = True   # etcd does not bump the revision here (AuthDisable does)
        txn.put(_ENABLED, b"\x01", db=self.backend.auth)
        self._perm_cache = {}
        return rpc_pb2.AuthEnableResponse()

    def _apply_AuthDisable(self, txn, req):
        if self.enabled:
            self.enabled = False
            self.tokens.clear()
            txn.put(_ENABLED, b"\x00", db=self.backend.auth)
            self._bump(txn)
        return rpc_pb2.AuthDisableResponse()

    def _apply_Authenticate(self, txn, req):
        """etcd's authStore.Authenticate at apply: the password was checked by the
        member that proposed; here every member assigns the same token."""
        n = req[0]
        prefix, name = bytes(req[1:1 + n]).decode(), bytes(req[1 + n:]).decode()
        if not self.enabled:
            raise etcd_error(EtcdError.AUTH_NOT_ENABLED)
        u = self.users.get(name)
        if u is None or u.options.no_password:
            raise etcd_error(EtcdError.AUTH_FAILED)
        try:
            tok = self.tokens.assign(name, self.revision, prefix, self.apply_index)
        except TokenConfigError as e:   # a verify-only JWT key: etcd's error, code Unknown
            raise GrpcError(StatusCode.UNKNOWN, str(e)) from None
        return rpc_pb2.AuthenticateResponse(token=tok)

    def _apply_UserAdd(self, txn, req):
        r = rpc_pb2.AuthUserAddRequest.FromString(req)
        if not r.name:
            raise etcd_error(EtcdError.USER_EMPTY)
        if r.name in self.users:
            raise etcd_error(EtcdError.USER_ALREADY_EXIST)
        u = auth_pb2.User(name=r.name.encode())
        if r.HasField("options"):
            u.options.CopyFrom(r.options)
        if not r.options.no_password:
            u.password = r.hashedPassword.encode()
        self._put_user(txn, u)
        self._bump(txn)
        return rpc_pb2.AuthUserAddResponse()

    def _apply_UserDelete(self, txn, req):
        r = rpc_pb2.AuthUserDeleteRequest.FromString(req)
        if self.enabled and r.name == ROOT:
            raise etcd_error(EtcdError.INVALID_AUTH_MGMT)
        self._user(r.name)
        del self.users[r.name]
        self.tokens.invalidate_user(r.name)
        txn.delete(named_key(_USER, r.name.encode()), db=self.backend.auth)
        self._bump(txn)
        return rpc_pb2.AuthUserDeleteResponse()

    def _apply_UserChangePassword(self, txn, req):
        r = rpc_pb2.AuthUserChangePasswordRequest.FromString(req)
        u = auth_pb2.User()
        u.CopyFrom(self._user(r.name))
        # etcd keeps a no-password user without one
        u.password = b"" if u.options.no_password else r.hashedPassword.encode()
        self._put_user(txn, u)
        self.tokens.invalidate_user(r.name)
        self._bump(txn)
        return rpc_pb2.AuthUserChangePasswordResponse()

    def _apply_UserGrantRole(self, txn, req):
        r = rpc_pb2.AuthUserGrantRoleRequest.FromString(req)
        u = auth_pb2.User()
        u.CopyFrom(self._user(r.user))
        if r.role != ROOT:
            self._role(r.role)
        if r.role in u.roles:
            return rpc_pb2.AuthUserGrantRoleResponse()   # etcd: already granted, no error
        roles = sorted(list(u.roles) + [r.role])
        del u.roles[:]
        u.roles.extend(roles)
        self._put_user(txn, u)
        self._bump(txn)
        return rpc_pb2.AuthUserGrantRoleResponse()

    def _apply_UserRevokeRole(self, txn, req):
        r = rpc_pb2.AuthUserRevokeRoleRequest.FromString(req)
        if self.enabled and r.name == ROOT and r.role == ROOT:
            raise etcd_error(EtcdError.INVALID_AUTH_MGMT)
        u = auth_pb2.User()
        u.CopyFrom(self._user(r.name))
        if r.role not in u.roles:
            raise etcd_error(EtcdError.ROLE_NOT_GRANTED)
        u.roles.remove(r.role)
        self._put_user(txn, u)
        self._bump(txn)
        return rpc_pb2.AuthUserRevokeRoleResponse()

    def _apply_RoleAdd(self, txn, req):
        r = rpc_pb2.AuthRoleAddRequest.FromString(req)
        if not r.name:
            raise etcd_error(EtcdError.ROLE_EMPTY)
        if r.name in self.roles:
            raise etcd_error(EtcdError.ROLE_ALREADY_EXIST)
        self._put_role(txn, auth_pb2.Role(name=r.name.encode()))
        self._bump(txn)
        return rpc_pb2.AuthRoleAddResponse()

    def _apply_RoleDelete(self, txn, req):
        r = rpc_pb2.AuthRoleDeleteRequest.FromString(req)
        if self.enabled and r.role == ROOT:
            raise etcd_error(EtcdError.INVALID_AUTH_MGMT)
        self._role(r.role)
        del self.roles[r.role]
        txn.delete(named_key(_ROLE, r.role.encode()), db=self.backend.auth)
        for u in list(self.users.values()):   # etcd revokes it from every user
            if r.role in u.roles:
                nu = auth_pb2.User()
                nu.CopyFrom(u)
                nu.roles.remove(r.role)
                self._put_user(txn, nu)
        self._bump(txn)
        return rpc_pb2.AuthRoleDeleteResponse()

    def _apply_RoleGrantPermission(self, txn, req):
        r = rpc_pb2.AuthRoleGrantPermissionRequest.FromString(req)
        if not r.HasField("perm"):   # etcd checks this before it looks the role up
            raise etcd_error(EtcdError.PERMISSION_NOT_GIVEN)
        role = auth_pb2.Role()
        role.CopyFrom(self._role(r.name))
        perms = [auth_pb2.Permission(key=p.key, range_end=p.range_end, permType=p.permType)
                 for p in role.keyPermission]
        # etcd looks only at the first permission whose key is not below the new one
        # (sort.Search): the same key and range_end there is updated in place; anything
        # else is appended and the list sorted by key with sort.Sort, so a range_end
        # already held behind another one of the same key is held twice.
        i = bisect.bisect_left([p.key for p in perms], r.perm.key)
        if i < len(perms) and perms[i].key == r.perm.key and perms[i].range_end == r.perm.range_end:
            perms[i].permType = r.perm.permType
        else:
            perms.append(auth_pb2.Permission(key=r.perm.key, range_end=r.perm.range_end,
                                             permType=r.perm.permType))
            perms = go_sort(perms, key=lambda p: p.key)
        del role.keyPermission[:]
        role.keyPermission.extend(perms)
        self._put_role(txn, role)
        self._bump(txn)
        return rpc_pb2.AuthRoleGrantPermissionResponse()

    def _apply_RoleRevokePermission(self, txn, req):
        r = rpc_pb2.AuthRoleRevokePermissionRequest.FromString(req)
        role = auth_pb2.Role()
        role.CopyFrom(self._role(r.role))
        perms = [p for p in role.keyPermission
                 if not (p.key == r.key and p.range_end == r.range_end)]
        if len(perms) == len(role.keyPermission):
            raise etcd_error(EtcdError.PERMISSION_NOT_GRANTED)
        del role.keyPermission[:]
        role.keyPermission.extend(perms)
        self._put_role(txn, role)
        self._bump(txn)
        return rpc_pb2.AuthRoleRevokePermissionResponse()

    # ---- reads ----

    def user_get(self, name: str) -> rpc_pb2.AuthUserGetResponse:
        return rpc_pb2.AuthUserGetResponse(roles=list(self._user(name).roles))

    def role_get(self, name: str) -> rpc_pb2.AuthRoleGetResponse:
        role = self._role(name)
        return rpc_pb2.AuthRoleGetResponse(perm=list(role.keyPermission))

    def user_list(self) -> rpc_pb2.AuthUserListResponse:
        return rpc_pb2.AuthUserListResponse(users=sorted(self.users))

    def role_list(self) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(roles=sorted(self.roles))

    # ---- permissions ----

    def is_root(self, user: Optional[str]) -> bool:
        u = self.users.get(user) if user else None
        return u is not None and ROOT in u.roles

    def check_admin(self, user: Optional[str]) -> None:
        """etcd's IsAdminPermitted."""
        if not self.enabled:
            return
        if not user:
            raise etcd_error(EtcdError.USER_EMPTY)
        if not self.is_root(user):
            raise etcd_error(EtcdError.PERMISSION_DENIED)

    def check_range(self, user: Optional[str], key: bytes, end: bytes, want: int) -> None:
        """etcd's isOpPermitted: ``want`` is READ or WRITE."""
        if not self.enabled:
            return
        if not user:
            raise etcd_error(EtcdError.USER_EMPTY)
        rev = getattr(user, "rev", None)   # a kvcore.auth.caller.Caller
        if rev is not None and rev < self.revision:
            raise etcd_error(EtcdError.AUTH_OLD_REVISION)
        u = self.users.get(user)
        if u is None:
            raise etcd_error(EtcdError.PERMISSION_DENIED)
        if ROOT in u.roles:
            return
        perms = self._perm_cache.get(user)
        if perms is None:
            perms = self._perm_cache[user] = UserPerms(
                [self.roles[rn] for rn in u.roles if rn in self.roles])
        if perms.allows(key, end, want):
            return
        raise etcd_error(EtcdError.PERMISSION_DENIED)
