"""The auth fuzzer's driver (tests/fuzz/test_auth_diff.py): send a step to kvcore and
etcd 3.5.1 as its caller, assert the same answer, and keep what a client keeps
(passwords it set, a token per user per server).

Tokens are kept as a client keeps them: one per user per server, from Authenticate
with the password the run last gave that user; a token the server calls invalid (its
user deleted, its password changed, auth disabled) is dropped and the next call
authenticates again.
"""
from __future__ import annotations

import collections
import contextlib
import os
from typing import Optional

from kvcore.api import rpc_pb2
from tests import etcd351, servers
from tests.fuzz import authdiff, authgen, diff
from tests.fuzz.authgen import Step

# --bcrypt-cost 4: etcd's minimum (each UserAdd, password change and Authenticate
# costs one bcrypt); --auth-token-ttl 3600: no token lapses during a run (a lapse
# depends on each server's clock).
FLAGS = ("--bcrypt-cost", "4", "--auth-token-ttl", "3600")


class Run:
    """Both servers, the passwords the run set (None: nobody can authenticate as that
    user), and counts of what ran. ``restart`` replaces both servers with fresh ones."""

    def __init__(self, base: str):
        self.base = base
        self.generation = 0
        self.stats: collections.Counter = collections.Counter()
        self._start()

    def _start(self) -> None:
        self.generation += 1
        base = os.path.join(self.base, str(self.generation))
        os.makedirs(base)
        self.kv = servers.start_kvcore(os.path.join(base, "kv.etcd"), workers=2, extra=FLAGS)
        try:
            self.et = servers.start_etcd(os.path.join(base, "etcd.etcd"),
                                         binary=etcd351.ETCD, extra=FLAGS)
        except BaseException:
            self.kv.stop()
            raise
        self.ks, self.es = authdiff.AuthSide(self.kv.endpoint), authdiff.AuthSide(self.et.endpoint)
        self.passwords: dict[str, Optional[str]] = {}

    def stop(self) -> None:
        """Stop both; kvcore must have run to the end with no "fatal" in its log."""
        try:
            _alive(self.kv)
        finally:
            self.ks.close()
            self.es.close()
            self.kv.stop()
            self.et.stop()

    def restart(self) -> None:
        self.stop()
        self._start()

    def __repr__(self):
        return "run"


@contextlib.contextmanager
def pair(base):
    """A fresh kvcore and etcd 3.5.1 (FLAGS) as a Run."""
    r = Run(str(base))
    try:
        yield r
    finally:
        r.stop()


def _alive(kv):
    assert kv.proc.poll() is None, "kvcore exited:\n" + kv.log()[-3000:]
    assert "fatal" not in kv.log().lower(), kv.log()[-3000:]


def _same(a, b, what):
    assert a == b, f"{what}\nkvcore: {a}\netcd:   {b}"


def authenticate(run: Run, user: str, password: str) -> tuple:
    """Authenticate on both; on success each side keeps its token for ``user``."""
    req = rpc_pb2.AuthenticateRequest(name=user, password=password)
    (a, ra), (b, rb) = (authdiff.call(run.ks, None, "Authenticate", req),
                        authdiff.call(run.es, None, "Authenticate", req))
    _same(a, b, f"Authenticate {user!r}")
    if rb is not None:
        run.ks.tokens[user], run.es.tokens[user] = ra.token, rb.token
    run.stats[f"Authenticate: {_outcome(b)}"] += 1
    return a


def _outcome(ans) -> str:
    """An answer in short, for the counts: ok, ok+canceled (a refused watch), or the
    error message."""
    if isinstance(ans, list):    # a watch's responses
        ans = ans[0] or ("none",)
    if ans[0] == "ok":
        return "ok+canceled" if "canceled: true" in ans[1] else "ok"
    return ans[-1]


def tokens(run: Run, user: Optional[str]) -> tuple:
    """(kvcore token, etcd token) for ``user``: the kept ones, or fresh ones (None
    when it cannot authenticate: auth off, no such user, a no-password user)."""
    if user is None:
        return None, None
    if user not in run.es.tokens and run.passwords.get(user) is not None:
        authenticate(run, user, run.passwords[user])
    return run.ks.tokens.get(user), run.es.tokens.get(user)


def _forget_token(run: Run, etcd_token: str) -> None:
    for user, tok in list(run.es.tokens.items()):
        if tok == etcd_token:
            _forget(run, user)


def _forget(run: Run, user: Optional[str]) -> None:
    for side in (run.ks, run.es):
        side.tokens.pop(user, None)


def run_step(run: Run, step: Step):
    """Send one step to both as its caller; assert the same answer; keep the model
    of passwords and tokens. Returns kvcore's answer."""
    tk, te = tokens(run, step.caller)
    m, req = step.method, step.req
    if m == "Authenticate":
        return authenticate(run, req.name, req.password)
    if m == "Watch":
        a, b = diff.watch(run.ks.as_token(tk), run.es.as_token(te), req, False)
        if a != b and _from_key_watch_refused(run, te, req, a, b):
            return a
    elif m == "Txn" and authdiff.needs_later_checks(run.es, te, req):
        return _later_checked_txn(run, tk, te, req)
    else:
        (a, _), (b, rb) = authdiff.call(run.ks, tk, m, req), authdiff.call(run.es, te, m, req)
        if m == "LeaseTimeToLive" and a != b and _ttl_keys_refused(run, te, a, rb):
            return a
    _alive(run.kv)
    if a != b:
        _same(a, b, f"{step}\n{_describe(run, step.caller)}")
    run.stats[f"{m}: {_outcome(b)}"] += 1
    if b == authdiff.TOKEN_INVALID:
        _forget(run, step.caller)
        run.stats["invalid token"] += 1
    elif b[0] == "ok":
        _model(run, m, req)
    return a


def _describe(run: Run, user: Optional[str]) -> str:
    """The caller's roles and their permissions as etcd has them (read as root, if
    root can authenticate), for a failure's message."""
    if user is None:
        return "caller: none"
    _, te = tokens(run, "root")
    A = rpc_pb2
    ans, resp = authdiff.call(run.es, te, "UserGet", A.AuthUserGetRequest(name=user))
    if resp is None:
        return f"caller {user}: {ans}"
    out = [f"caller {user}: roles {list(resp.roles)}"]
    for role in resp.roles:
        ans, _ = authdiff.call(run.es, te, "RoleGet", A.AuthRoleGetRequest(role=role))
        out.append(f"  {role}: {ans[-1]!r}")
    return "\n".join(out)


def _later_checked_txn(run: Run, tk, te, req):
    """A txn only later etcd (and kvcore) refuses: kvcore alone, which must refuse
    it and change nothing (authdiff, "etcd 3.5.1's txn permission gaps"). A txn
    kvcore refuses for its form (checked before permissions, in both) goes to etcd
    too, which must refuse it the same way."""
    before = authdiff.revision(run.ks)
    a, _ = authdiff.call(run.ks, tk, "Txn", req)
    assert a[0] == "error", f"{req}\nkvcore: {a}"
    assert authdiff.revision(run.ks) == before
    if (a[1], a[2]) in authdiff.AUTH_REFUSALS:
        run.stats["Txn: refused as later etcd does"] += 1
    else:
        _same(a, authdiff.call(run.es, te, "Txn", req)[0], f"Txn {req}")
        run.stats[f"Txn: {_outcome(a)}"] += 1
    return a


def _from_key_watch_refused(run: Run, te, req, a, b) -> bool:
    """kvcore refuses a from-key watch (range_end "\\0") unless the caller may read
    the whole range, as etcd 3.5.33 does; 3.5.1 checks only its first key (the watch
    server turns "\\0" into an empty range_end, which the check takes for a key)."""
    if req.range_end != b"\x00" or not b or b[0] is None or b[0][0] != "ok":
        return False
    refused = ("ok", b[0][1].replace("created: true\n", "created: true\ncanceled: true\n"
                                     'cancel_reason: "rpc error: code = PermissionDenied '
                                     'desc = etcdserver: permission denied"\n'))
    if a != [refused]:
        return False
    if authdiff.permitted(run.es, te, authdiff.READ, req.key or b"\x00", b"\x00"):
        return False
    run.stats["Watch: refused as later etcd does"] += 1
    return True


def _ttl_keys_refused(run: Run, te, a, rb) -> bool:
    """kvcore refuses a LeaseTimeToLive with keys the caller may not read (etcd 3.5.9's
    fix of CVE-2023-32082; 3.5.1 lists them to anyone), and one with a token the
    server does not know (etcd 3.5.28's requireAuthInfo; 3.5.1 reads no token there).
    The client drops such a token, as after any "invalid auth token"."""
    if a == authdiff.TOKEN_INVALID and rb is not None:
        if authdiff.call(run.es, te, "Txn", rpc_pb2.TxnRequest())[0] != authdiff.TOKEN_INVALID:
            return False
        _forget_token(run, te)
        run.stats["LeaseTimeToLive: invalid token, as later etcd"] += 1
        return True
    if a[0] != "error" or (a[1], a[2]) not in authdiff.AUTH_REFUSALS or rb is None:
        return False
    if all(authdiff.permitted(run.es, te, authdiff.READ, k, b"") for k in rb.keys):
        return False
    run.stats["LeaseTimeToLive: refused as later etcd does"] += 1
    return True


def _model(run: Run, method: str, req) -> None:
    """What a successful change means for the passwords the run knows. Tokens are
    kept: a client learns that its user was deleted, its password changed or auth
    disabled from the "invalid auth token" its next call gets."""
    if method == "UserAdd":
        run.passwords[req.name] = None if req.options.no_password else req.password
    elif method == "UserDelete":
        run.passwords.pop(req.name, None)
    elif method == "UserChangePassword":
        # an empty new password is stored empty: no password matches it
        if run.passwords.get(req.name, "") is not None:
            run.passwords[req.name] = req.password or None


def check_state(run: Run):
    """The auth state and the keyspace, read as root (as nobody while auth is off).
    When auth is on and root cannot authenticate (its password set empty, a
    no-password root), nothing can change any more: both servers start afresh."""
    run_step(run, Step("root", "AuthStatus", rpc_pb2.AuthStatusRequest()))   # drops a stale token
    tk, te = tokens(run, "root")
    if te is None and authdiff.call(run.es, None, "AuthStatus", rpc_pb2.AuthStatusRequest())[0][0] == "error":
        run.stats["(both servers started afresh: root locked out)"] += 1
        run.restart()
        return
    A = rpc_pb2
    reads = [("AuthStatus", A.AuthStatusRequest()), ("UserList", A.AuthUserListRequest()),
             ("RoleList", A.AuthRoleListRequest()),
             ("Range", A.RangeRequest(key=b"\x00", range_end=b"\x00"))]
    reads += [("UserGet", A.AuthUserGetRequest(name=u)) for u in authgen.USERS]
    reads += [("RoleGet", A.AuthRoleGetRequest(role=r)) for r in authgen.ROLES]
    for method, req in reads:
        (a, _), (b, _) = authdiff.call(run.ks, tk, method, req), authdiff.call(run.es, te, method, req)
        _same(a, b, f"state: {method} {req}")
    _alive(run.kv)
