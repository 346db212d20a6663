"""A worker's own permission check for Range while auth is on.

Without it every Range of an authenticated client goes to the core, which checks
the caller and serves the read itself: with auth on, reads ran at 0.5-0.8x etcd
3.5.1 instead of 1.6-2x (docs/decisions.md, "Reads with auth on, checked in the
worker"). Here the worker asks the core only who a token names (AUTH_WHO_METHOD:
the core's own ``caller``, which also pushes a simple token's deadline back) and
reuses that answer for a moment (the core says how long: at most a second, a quarter
of a simple token's TTL, never past a JWT's expiry). The permission itself is checked
against the auth store as the read's own LMDB transaction sees it, with the core's
code (kvcore/auth/store.py). An answer is used only while that transaction's auth
revision is the one the core answered at: any change of users, roles, permissions or
of auth itself (each bumps the revision) sends the read to the core instead, which
decides it as before.
"""
from __future__ import annotations

import time
from typing import Optional

from kvcore.auth.caller import Caller, unpack_who
from kvcore.ipc.framing import AUTH_WHO_METHOD
from kvcore.auth.store import READ, AuthStore, stored_state

MAX_TOKENS = 4096     # answers kept; all dropped at once beyond (as JWTTokens' cache)


class AuthView:
    def __init__(self, client):
        self.client = client
        self._store = AuthStore()
        self._loaded: Optional[int] = None     # the auth revision _store holds
        self._who: dict[str, tuple[Caller, int, float]] = {}

    async def who(self, token: str) -> Optional[tuple[Caller, int, float]]:
        """(caller, the store's revision then, reuse deadline), or None: ask the core.
        Raises the core's refusal of the token (etcd's invalid auth token)."""
        hit = self._who.get(token)
        now = time.monotonic()
        if hit is not None and hit[2] > now:
            return hit
        ans = unpack_who(await self.client.call(AUTH_WHO_METHOD, token.encode()))
        if ans is None:
            self._who.pop(token, None)
            return None
        caller, store_rev, reuse_s = ans
        ent = (caller, store_rev, now + reuse_s)
        if len(self._who) >= MAX_TOKENS:
            self._who.clear()
        self._who[token] = ent
        return ent

    def check(self, txn, backend, token: str, ent, key: bytes, end: bytes) -> bool:
        """Check READ of [key, end) for ``ent`` (from ``who``) as ``txn`` sees the
        store: raises etcd's refusal, True when allowed, False when the store is not
        at the revision the core answered at (the core decides)."""
        enabled, rev = stored_state(txn, backend)
        if not enabled or rev != ent[1]:
            self._who.pop(token, None)
            return False
        if self._loaded != rev:
            self._store.load_from(txn, backend)
            self._loaded = rev
        self._store.check_range(ent[0], key, end, READ)
        return True
