"""The Auth service and the permission check every call passes while auth is enabled.

Changes (users, roles, permissions, enable/disable) are proposals (OP_AUTH: one
byte naming the change in AUTH_OPS, then the etcd request bytes) applied by
``AuthStore.apply`` (kvcore/auth/store.py); passwords are bcrypt-hashed before
proposing, as etcd 3.5 does, so every member stores the same hash. Reads are linearizable reads of the
core's in-memory copy.

``authorize(method id, request, token)`` runs in the core before a call's handler
when auth is enabled: the token (or, with --client-cert-auth and no token, the
client certificate's CN) names the user, and the method's check decides (etcd's
authApplierV3 and authMaintenanceServer). Writes and auth changes are proposed
stamped with that caller (OP_STAMPED) and checked again at apply
(kvcore/auth/caller.py).

Authenticate is a proposal too (etcd 3.5): the password is checked here, then every
member assigns the token when it applies the entry (kvcore/auth/tokens.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

import bcrypt

from kvcore import logs
from kvcore.api import rpc_pb2, v3election_pb2 as epb, v3lock_pb2 as lpb, wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.api.methods import METHOD_ID, PATHS
from kvcore.auth.caller import (ANONYMOUS, CALLER, RECHECK, TRUSTED, TRUSTED_REV, Caller,
                                TokenPending, pack_who, stamp, unstamp)
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.concurrency.client import prefix_end
from kvcore.auth.store import READ, WRITE
from kvcore.ipc.framing import CN_MARK
from kvcore.server.entry import (OP_AUTH, OP_DELETE, OP_LEASE_REVOKE, OP_PUT, OP_STAMPED,
                                 OP_TXN)

log = logging.getLogger("kvcore.auth")
AUTH = "/etcdserverpb.Auth/"
AUTH_OPS = ("AuthEnable", "AuthDisable", "UserAdd", "UserDelete", "UserChangePassword",
            "UserGrantRole", "UserRevokeRole", "RoleAdd", "RoleDelete",
            "RoleGrantPermission", "RoleRevokePermission", "Authenticate")
_OP_INDEX = {n: i for i, n in enumerate(AUTH_OPS)}
_REQUEST = {n: ("" if n.startswith("Auth") else "Auth") + n + "Request" for n in AUTH_OPS}
NO_PASSWORD_USER = "auth: authentication failed, password was given for no password user"
TOKEN_WAIT_LIMIT = 60.0   # seconds a call may wait for its token's entry to apply
# Proposals checked again at apply -> the method whose check runs (OP_AUTH's method
# is named by its first byte).
STAMPED_OPS = {OP_PUT: "/etcdserverpb.KV/Put", OP_DELETE: "/etcdserverpb.KV/DeleteRange",
               OP_TXN: "/etcdserverpb.KV/Txn", OP_LEASE_REVOKE: "/etcdserverpb.Lease/LeaseRevoke",
               OP_AUTH: None}


def _body(msg) -> bytes:
    msg.ClearField("header")
    return msg.SerializeToString()


class AuthService:
    def __init__(self, ctx):
        self.ctx = ctx
        self.checks: list = [None] * len(PATHS)
        self._stamped_methods = {METHOD_ID[p] for p in STAMPED_OPS.values() if p}
        self._stamped_methods.update(METHOD_ID[AUTH + n] for n in AUTH_OPS
                                     if n != "Authenticate")
        self._rechecked_reads = {METHOD_ID["/etcdserverpb.KV/Range"],
                                 METHOD_ID["/etcdserverpb.KV/Txn"]}
        self._appliers: dict = {}
        self._plain: dict = {}   # op -> its applier without the unstamped-proposal guard
        self._waiters: dict[int, list] = {}   # log index -> futures (TokenPending)
        self._applied = 0

    @property
    def store(self):
        return self.ctx.auth

    def register(self, reg) -> None:
        u = reg.unary
        for name in AUTH_OPS:
            u[AUTH + name] = self._proposer(name)
        u[AUTH + "UserAdd"] = self.user_add
        u[AUTH + "UserChangePassword"] = self.user_change_password
        u[AUTH + "Authenticate"] = self.authenticate
        u[AUTH + "AuthStatus"] = self._reader(lambda r: rpc_pb2.AuthStatusResponse(
            enabled=self.store.enabled, authRevision=self.store.revision))
        u[AUTH + "UserGet"] = self._reader(lambda r: self.store.user_get(
            rpc_pb2.AuthUserGetRequest.FromString(r).name))
        u[AUTH + "UserList"] = self._reader(lambda r: self.store.user_list())
        u[AUTH + "RoleGet"] = self._reader(lambda r: self.store.role_get(
            rpc_pb2.AuthRoleGetRequest.FromString(r).role))
        u[AUTH + "RoleList"] = self._reader(lambda r: self.store.role_list())
        self._register_checks()
        reg.applier(OP_AUTH, self.apply)
        reg.applier(OP_STAMPED, self.apply_stamped, capped=self._stamped_capped)
        self._appliers = reg.appliers
        reg.state_opened(self._guard_unstamped)

    def apply(self, txn, w, req: bytes):
        resp = self.store.apply(txn, AUTH_OPS[req[0]], req[1:])
        return self.ctx.store.current_rev, resp.SerializeToString()

    # ---- handlers ----

    def _propose(self, name: str, req: bytes):
        return self.ctx.propose(OP_AUTH, bytes((_OP_INDEX[name],)) + req)

    def _proposer(self, name: str):
        msg = getattr(rpc_pb2, _REQUEST[name])

        def propose(req: bytes):
            msg.FromString(req)   # refuse what would not parse at apply (DecodeError)
            return self._propose(name, req)
        return propose

    def _reader(self, fn):
        ctx = self.ctx

        def handler(req: bytes):
            return ctx.linearizable(lambda: wire.with_header(
                ctx.header(ctx.store.current_rev), _body(fn(req))))
        return handler

    async def _hash(self, password: str) -> str:
        pw = password.encode()
        h = await self.ctx.loop.run_in_executor(
            None, lambda: bcrypt.hashpw(pw, bcrypt.gensalt(self.ctx.cfg.bcrypt_cost)))
        return h.decode()

    def user_add(self, req: bytes):
        r = rpc_pb2.AuthUserAddRequest.FromString(req)
        if not r.name:
            raise etcd_error(EtcdError.USER_EMPTY)
        if r.options.no_password:
            return self._propose("UserAdd", req)
        # etcd 3.5 hashes the password given and replaces any hashedPassword sent

        async def run():
            r.hashedPassword = await self._hash(r.password)
            r.password = ""
            return await self._propose("UserAdd", r.SerializeToString())
        return asyncio.ensure_future(run())

    def user_change_password(self, req: bytes):
        r = rpc_pb2.AuthUserChangePasswordRequest.FromString(req)
        if r.hashedPassword or not r.password:
            # etcd hashes only a password given: an empty one is stored empty (and
            # no password matches it then)
            return self._propose("UserChangePassword", req)

        async def run():
            r.hashedPassword = await self._hash(r.password)
            r.password = ""
            return await self._propose("UserChangePassword", r.SerializeToString())
        return asyncio.ensure_future(run())

    def authenticate(self, req: bytes):
        """etcd's EtcdServer.Authenticate: check the password, propose the user and a
        fresh token prefix, and try again if the auth store changed meanwhile."""
        r = rpc_pb2.AuthenticateRequest.FromString(req)
        ctx = self.ctx
        pw = r.password.encode()

        async def run():
            # etcd reads linearizably first: a member behind the log (a joiner, a lagging
            # follower) then answers from the auth state the leader has, not its own.
            await ctx.linearizable(lambda: None)
            store = self.store
            if not store.enabled:
                raise etcd_error(EtcdError.AUTH_NOT_ENABLED)
            while True:
                u = store.users.get(r.name)
                if u is None or (not u.password and not u.options.no_password):
                    raise etcd_error(EtcdError.AUTH_FAILED)
                if u.options.no_password:   # etcd's ErrNoPasswordUser, unmapped: Unknown
                    raise GrpcError(StatusCode.UNKNOWN, NO_PASSWORD_USER)
                checked = store.revision
                stored = bytes(u.password)
                ok = await ctx.loop.run_in_executor(None, lambda: bcrypt.checkpw(pw, stored))
                if not ok:
                    raise etcd_error(EtcdError.AUTH_FAILED)
                prefix = store.tokens.prefix().encode()
                resp = await self._propose("Authenticate", bytes((len(prefix),)) + prefix
                                           + r.name.encode())
                if checked == store.revision:
                    return resp
        return asyncio.ensure_future(run())

    # ---- who is calling ----

    def caller(self, token: Optional[str]) -> Optional[Caller]:
        """The caller a request's token (or certificate name) says: None for none;
        etcd's invalid-token error for one no provider knows; TokenPending for a
        simple token whose Authenticate entry is not applied here yet."""
        if not token:
            return None
        store = self.store
        if token[0] == CN_MARK:   # etcd: the CN counts only with --client-cert-auth
            cn = token[1:]
            return Caller(cn, store.revision) if cn and self.ctx.cfg.client_cert_auth else None
        info = store.tokens.info(token, store.revision)
        if info is not None:
            return Caller(*info)
        index = store.tokens.pending_index(token)
        if index is not None and index > max(self._applied, self.ctx.applied_index):
            raise TokenPending(self._wait_applied(index))
        log.warning("invalid auth token", extra=logs.fields(token=token))
        raise etcd_error(EtcdError.INVALID_AUTH_TOKEN)

    def who(self, token: str) -> bytes:
        """For a worker that checks a Range itself: who ``token`` names, packed
        (kvcore.auth.caller.pack_who), or b"" when the core should serve the call
        (auth off, a certificate name). Raises as ``caller`` does, TokenPending too."""
        store = self.store
        if not store.enabled or not token or token[0] == CN_MARK:
            return b""
        return pack_who(self.caller(token), store.revision, store.tokens.reuse_for(token))

    def _auth_pkg_caller(self, token: Optional[str]) -> Optional[Caller]:
        """``caller`` for etcd's authMaintenanceServer (Hash, HashKV, Defragment,
        Snapshot), which returns the auth package's own error for an unknown token:
        code Unknown, "auth: invalid auth token"."""
        try:
            return self.caller(token)
        except GrpcError as e:
            if (e.code, e.message) == EtcdError.INVALID_AUTH_TOKEN:
                raise GrpcError(*_AUTH_PKG_INVALID) from None
            raise

    def _wait_applied(self, index: int):
        fut = self.ctx.loop.create_future()
        self._waiters.setdefault(index, []).append(fut)

        def expire():
            if not fut.done():
                fut.set_result(False)
        # etcd waits as long as the client does; the client's deadline answers it
        # (DEADLINE_EXCEEDED), this bound only frees what nobody waits for any more.
        self.ctx.loop.call_later(TOKEN_WAIT_LIMIT, expire)
        return fut

    def applied(self, index: int) -> None:
        """The core applied entries up to ``index``: wake the token checks waiting."""
        self._applied = index
        if self._waiters:
            for i in [i for i in self._waiters if i <= index]:
                for fut in self._waiters.pop(i):
                    if not fut.done():
                        fut.set_result(True)

    # ---- stamping proposals with their caller ----

    def stamp(self, op: int, req: bytes) -> tuple[int, bytes]:
        """What the core proposes while auth is on: a checked op stamped with the
        running handler's caller, or TRUSTED when the member proposes it itself."""
        if op not in STAMPED_OPS:
            return op, req
        return OP_STAMPED, stamp(CALLER.get() or TRUSTED, op, req)

    def stamp_trusted(self, op: int, req: bytes) -> tuple[int, bytes]:
        if op not in STAMPED_OPS:
            return op, req
        return OP_STAMPED, stamp(TRUSTED, op, req)

    def apply_stamped(self, txn, w, data: bytes):
        """A stamped proposal: its own applier, if its caller is still allowed
        (etcd's authApplierV3), else the etcd error."""
        caller, op, inner = unstamp(data)
        if self.store.enabled and caller.rev != TRUSTED_REV:
            self._check_at_apply(caller, op, inner)
        return self._plain[op](txn, w, inner)

    def _check_at_apply(self, caller: Optional[Caller], op: int, inner: bytes) -> None:
        if op == OP_AUTH:
            path, payload = AUTH + AUTH_OPS[inner[0]], inner[1:]
        else:
            path, payload = STAMPED_OPS[op], inner
        check = self.checks[METHOD_ID[path]]
        if check is not None and check is not _NO_CHECK:
            check(caller, payload)

    def _guard_unstamped(self) -> None:
        """A checked op that arrives unstamped was proposed while auth was off; applied
        once it is on, it is checked as etcd checks a request whose header has no user
        (auth revision 0): "etcdserver: user name is empty" for what needs one."""
        for op in STAMPED_OPS:
            if op in self._plain:
                continue
            a = self._appliers[op]
            self._plain[op] = fn = a.fn

            def guarded(txn, w, req: bytes, op=op, fn=fn):
                if self.store.enabled:
                    self._check_at_apply(None, op, req)
                return fn(txn, w, req)
            self._appliers[op] = a._replace(fn=guarded)

    def _stamped_capped(self, data: bytes) -> bool:
        _, op, inner = unstamp(data)
        capped = self._appliers[op].capped
        return capped is not None and capped(inner)

    # ---- permission checks ----
    # ---- permission checks ----

    def authorize(self, method: int, payload: bytes, token: Optional[str]):
        """Raises the etcd error that refuses this call (auth is enabled), or
        TokenPending. For a method re-checked at apply, sets CALLER and returns the
        contextvars token the caller resets once the handler has run."""
        check = self.checks[method] if method < len(self.checks) else None
        if check is _NO_CHECK:
            return None
        if method in _AUTH_PKG_METHODS:
            user = self._auth_pkg_caller(token)
        else:
            user = self.caller(token)
        if check is not None:
            check(user, payload)
        resets = []
        if method in self._stamped_methods:
            resets.append((CALLER, CALLER.set(user if user is not None else ANONYMOUS)))
        if method in self._rechecked_reads:
            resets.append((RECHECK, RECHECK.set(
                lambda: self._recheck(method, check, payload, token))))
        return resets or None

    def _recheck(self, method: int, check, payload: bytes, token: Optional[str]) -> None:
        """etcd's doSerialize, run once a linearizable read's index is reached: the
        caller and its permission as they are now (a simple token takes the current
        auth revision, a JWT keeps its own: a changed store is "revision ... old")."""
        if not self.store.enabled or check is None:
            return
        check(self.caller(token), payload)

    def stream_user(self, token: Optional[str]) -> Optional[str]:
        return self.caller(token)   # TokenPending goes up: the IPC server waits

    # ---- a token sent while auth is disabled ----

    def refuse_token_while_off(self, method: int, payload: bytes,
                               token: Optional[str]) -> None:
        """etcd reads a sent token even with auth disabled (AuthInfoFromCtx): a
        token it does not know fails the methods that ask for the caller, each with
        the error its server gives it. Raises that error; returns if none applies."""
        if not token or token[0] == CN_MARK:
            return
        err = _OFF_TOKEN_ERRORS.get(method)
        if err is None:
            return
        if method in _NEEDS_LEADER and not _has_leader(method, payload):
            return   # etcd checks the request's leader field first
        if method == _DOWNGRADE and rpc_pb2.DowngradeRequest.FromString(payload).action == 0:
            return   # VALIDATE is a read that asks no caller
        if self.store.tokens.info(token, self.store.revision) is None:
            raise GrpcError(*err)

    def wrap_stream_while_off(self, path: str, factory, st, token: Optional[str]):
        """A stream's handler when auth is disabled and the client sent a token
        (None: refused, already ended): an unknown token refuses a snapshot and
        every watch create, as etcd's authMaintenanceServer and isWatchPermitted do."""
        if token[0] == CN_MARK or self.store.tokens.info(token, self.store.revision):
            return factory(st)
        if path == "/etcdserverpb.Maintenance/Snapshot":
            st.end(*_AUTH_PKG_INVALID)
            return None
        if path == "/etcdserverpb.Watch/Watch":
            return _AuthWatch(self.ctx, factory(st), st, _NOBODY)
        return factory(st)

    def _register_checks(self) -> None:
        c = {}

        def admin(user, payload):
            self.store.check_admin(user)

        def maint_admin(user, payload):
            # etcd's authMaintenanceServer returns the auth package's own error
            # (not an rpctypes one), so clients see code Unknown and "auth: ...".
            try:
                self.store.check_admin(user)
            except GrpcError as e:
                raise GrpcError(StatusCode.UNKNOWN, "auth: " + e.message.split(": ", 1)[1])

        def need_user(user, payload):
            if not user:
                raise etcd_error(EtcdError.USER_EMPTY)

        def rng(user, payload):
            r = rpc_pb2.RangeRequest.FromString(payload)
            self.store.check_range(user, r.key, r.range_end, READ)

        def lease_keys(user, lease_id):
            # etcd's checkLeasePuts: the user must be able to write every key
            # attached to the lease (to put onto it, or to revoke it).
            lease = self.ctx.lessor.lookup(lease_id) if lease_id else None
            for key in (sorted(lease.keys) if lease is not None else ()):
                self.store.check_range(user, key, b"", WRITE)

        def put(user, payload):
            r = rpc_pb2.PutRequest.FromString(payload)
            self.store.check_range(user, r.key, b"", WRITE)
            if r.prev_kv:
                self.store.check_range(user, r.key, b"", READ)
            lease_keys(user, r.lease)

        def delete(user, payload):
            r = rpc_pb2.DeleteRangeRequest.FromString(payload)
            self.store.check_range(user, r.key, r.range_end, WRITE)
            if r.prev_kv:
                self.store.check_range(user, r.key, r.range_end, READ)

        def txn_ops(user, t):
            for cmp in t.compare:
                self.store.check_range(user, cmp.key, cmp.range_end, READ)
            for ops in (t.success, t.failure):
                for op in ops:
                    kind = op.WhichOneof("request")
                    if kind == "request_range":
                        q = op.request_range
                        self.store.check_range(user, q.key, q.range_end, READ)
                    elif kind == "request_put":
                        q = op.request_put
                        self.store.check_range(user, q.key, b"", WRITE)
                        if q.prev_kv:
                            self.store.check_range(user, q.key, b"", READ)
                        lease_keys(user, q.lease)
                    elif kind == "request_delete_range":
                        q = op.request_delete_range
                        self.store.check_range(user, q.key, q.range_end, WRITE)
                        if q.prev_kv:
                            self.store.check_range(user, q.key, q.range_end, READ)
                    elif kind == "request_txn":
                        txn_ops(user, op.request_txn)

        def txn(user, payload):
            txn_ops(user, rpc_pb2.TxnRequest.FromString(payload))

        def lease_revoke(user, payload):
            lease_keys(user, rpc_pb2.LeaseRevokeRequest.FromString(payload).ID)

        def lease_ttl(user, payload):
            r = rpc_pb2.LeaseTimeToLiveRequest.FromString(payload)
            if r.keys:
                info = self.ctx.lessor.time_to_live(r.ID)
                for key in (info[2] if info else ()):
                    self.store.check_range(user, key, b"", READ)

        def user_get(user, payload):
            # etcd's authApplierV3.UserGet: root, or the user asking about itself (a
            # caller with no user asking about the empty name passes too: "" == "")
            name = rpc_pb2.AuthUserGetRequest.FromString(payload).name
            try:
                self.store.check_admin(user)
            except GrpcError:
                if name != (user or ""):
                    raise

        def role_get(user, payload):
            role = rpc_pb2.AuthRoleGetRequest.FromString(payload).role
            try:
                self.store.check_admin(user)
            except GrpcError:
                u = self.store.users.get(user) if user else None
                if u is None or role not in u.roles:
                    raise

        KV = "/etcdserverpb.KV/"
        c[KV + "Range"] = rng
        c[KV + "Put"] = put
        c[KV + "DeleteRange"] = delete
        c[KV + "Txn"] = txn
        M = "/etcdserverpb.Maintenance/"
        for m in ("Defragment", "Snapshot", "Hash", "HashKV", "Downgrade"):
            c[M + m] = maint_admin
        for m in ("MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"):
            c["/etcdserverpb.Cluster/" + m] = admin
        for name in AUTH_OPS + ("UserList", "RoleList", "AuthStatus"):
            c[AUTH + name] = admin
        c[AUTH + "UserGet"] = user_get   # UserChangePassword is root's only, as in etcd
        c[AUTH + "RoleGet"] = role_get
        c[AUTH + "Authenticate"] = _NO_CHECK
        c["/etcdserverpb.Lease/LeaseRevoke"] = lease_revoke
        c["/etcdserverpb.Lease/LeaseTimeToLive"] = lease_ttl
        # Lock and Election: etcd's services act through a client carrying the
        # caller's token, so they need the key permissions their KV calls need, and
        # the errors come back as that client's (code Unknown).
        def conc(msg, needs):
            def check(user, payload):
                try:
                    for want, key, end in needs(msg.FromString(payload)):
                        self.store.check_range(user, key, end, want)
                except GrpcError as e:
                    raise GrpcError(StatusCode.UNKNOWN, e.message)
            return check

        def prefix(name):
            return name + b"/", prefix_end(name + b"/")

        conc_checks = {
            "/v3lockpb.Lock/Lock": (lpb.LockRequest, lambda m: [
                (READ, *prefix(m.name)), (WRITE, *prefix(m.name))]),
            "/v3lockpb.Lock/Unlock": (lpb.UnlockRequest, lambda m: [(WRITE, m.key, b"")]),
            "/v3electionpb.Election/Campaign": (epb.CampaignRequest, lambda m: [
                (READ, *prefix(m.name)), (WRITE, *prefix(m.name))]),
            "/v3electionpb.Election/Leader": (epb.LeaderRequest, lambda m: [
                (READ, *prefix(m.name))]),
            "/v3electionpb.Election/Proclaim": (epb.ProclaimRequest, lambda m: [
                (WRITE, m.leader.key, b"")]),
            "/v3electionpb.Election/Resign": (epb.ResignRequest, lambda m: [
                (WRITE, m.leader.key, b"")]),
        }
        for p in PATHS:
            if p.startswith("/v3lockpb.") or p.startswith("/v3electionpb."):
                c[p] = need_user
        for p, (msg, needs) in conc_checks.items():
            c[p] = conc(msg, needs)
        for p, fn in c.items():
            self.checks[METHOD_ID[p]] = fn

    def wrap_stream(self, path: str, factory, st, token: Optional[str]):
        """A stream's handler when auth is enabled (None: refused, already ended);
        TokenPending if the token's Authenticate entry is not applied here yet."""
        if path == "/etcdserverpb.Lease/LeaseKeepAlive":
            return factory(st)   # etcd's LeaseRenew reads no token: any, or none, will do
        try:
            try:
                if path == "/etcdserverpb.Maintenance/Snapshot":
                    user = self._auth_pkg_caller(token)
                else:
                    user = self.stream_user(token)
            except GrpcError:
                if path != "/etcdserverpb.Watch/Watch":
                    raise
                user = None   # etcd: the stream opens, each create is refused
            if path == "/etcdserverpb.Maintenance/Snapshot":
                self.checks[METHOD_ID[path]](user, b"")
            elif path.startswith("/v3electionpb."):
                if not user:
                    raise etcd_error(EtcdError.USER_EMPTY)
        except GrpcError as e:
            st.end(e.code, e.message)
            return None
        handler = factory(st)
        if path == "/etcdserverpb.Watch/Watch":
            return _AuthWatch(self.ctx, handler, st, user)
        return handler


_NO_CHECK = object()


class _AuthWatch:
    """A watch stream whose creates are checked against the user's read permission
    (etcd's isWatchPermitted: a refused create is answered created+canceled)."""

    def __init__(self, ctx, inner, out, user):
        self._ctx = ctx
        self._inner = inner
        self._out = out
        self._user = user

    def on_message(self, payload: bytes) -> None:
        r = rpc_pb2.WatchRequest.FromString(payload)
        if r.HasField("create_request"):
            c = r.create_request
            try:
                if self._user is _NOBODY:
                    raise GrpcError(StatusCode.PERMISSION_DENIED, "")
                # etcd's watch server makes an empty key "\0" before the check
                self._ctx.auth.check_range(self._user, c.key or b"\x00", c.range_end, READ)
            except GrpcError:
                ctx = self._ctx
                resp = rpc_pb2.WatchResponse(
                    watch_id=c.watch_id, created=True, canceled=True,
                    cancel_reason="rpc error: code = PermissionDenied desc = "
                                  "etcdserver: permission denied")
                self._out.send(wire.with_header(ctx.header(ctx.store.current_rev),
                                                _body(resp)))
                return
        self._inner.on_message(payload)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def register(ctx, reg) -> AuthService:
    s = AuthService(ctx)
    s.register(reg)
    return s


# What a method answers to an unknown token while auth is disabled (etcd 3.5.1):
# the raft-request and member paths give rpctypes' error; Hash/HashKV/Defragment
# (authMaintenanceServer) give the auth package's own error, code Unknown; Lock
# and Election go through an embedded client, which turns the error into Unknown.
_INVALID = (StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
_AUTH_PKG_INVALID = (StatusCode.UNKNOWN, "auth: invalid auth token")
_EMBEDDED_INVALID = (StatusCode.UNKNOWN, "etcdserver: invalid auth token")
_OFF_TOKEN_ERRORS = {METHOD_ID[p]: e for e, paths in (
    (_INVALID, ["/etcdserverpb.KV/" + n for n in ("Range", "Put", "DeleteRange", "Txn",
                                                 "Compact")]
     + ["/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke",
        "/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Maintenance/Downgrade"]
     + ["/etcdserverpb.Cluster/Member" + n for n in ("Add", "Remove", "Update", "Promote")]
     + [p for p in PATHS if p.startswith(AUTH) and p != AUTH + "Authenticate"]),
    (_AUTH_PKG_INVALID, ["/etcdserverpb.Maintenance/" + n
                         for n in ("Hash", "HashKV", "Defragment")]),
    (_EMBEDDED_INVALID, ["/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock"]
     + ["/v3electionpb.Election/" + n for n in ("Campaign", "Leader", "Proclaim", "Resign")]),
) for p in paths}
_NEEDS_LEADER = {METHOD_ID["/v3electionpb.Election/Proclaim"]: epb.ProclaimRequest,
                 METHOD_ID["/v3electionpb.Election/Resign"]: epb.ResignRequest}
_DOWNGRADE = METHOD_ID["/etcdserverpb.Maintenance/Downgrade"]
_AUTH_PKG_METHODS = {METHOD_ID["/etcdserverpb.Maintenance/" + n]
                     for n in ("Hash", "HashKV", "Defragment", "Snapshot")}
_NOBODY = object()   # a watch whose token is unknown: every create is refused


def _has_leader(method: int, payload: bytes) -> bool:
    return _NEEDS_LEADER[method].FromString(payload).HasField("leader")
