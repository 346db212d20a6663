"""The identity a permission check ran with, carried with the request to apply.

etcd stamps every proposed request with the caller's user name and the auth
revision its token was checked at (RequestHeader.Username/AuthRevision) and checks
again when applying it: if the auth store changed in between, the request fails
with ``etcdserver: revision of auth store is old`` instead of being applied under
permissions that may have been revoked. kvcore does the same for the requests whose
check matters at apply (``STAMPED`` methods): the core's auth check sets
``CALLER`` while the handler runs, and ``stamp`` wraps what the handler proposes.

A stamped proposal's payload: u64 auth revision, u16 user length, the user (UTF-8),
u8 the inner proposal's op, then the inner payload. ``TRUSTED`` stamps what the
member proposes on its own while auth is on (lease expiry, the Lock and Election
services' writes after their own check), as etcd proposes those as root.

A linearizable read is checked when it arrives and again once the read index is
reached (etcd checks only then): ``RECHECK`` holds that second check while the
handler runs.
"""
from __future__ import annotations

import contextvars
import struct
from typing import Optional

_HEAD = struct.Struct("<QH")


class Caller(str):
    """A user name that also knows the auth revision it was authenticated at
    (0: unknown, as etcd's empty AuthInfo). Being a str, it goes wherever a user
    name goes."""

    rev: int

    def __new__(cls, name: str, rev: int):
        s = super().__new__(cls, name)
        s.rev = rev
        return s


class TokenPending(Exception):
    """A simple token from an Authenticate entry this member has not applied yet:
    ``future`` resolves (True) once it has, or False at the request timeout."""

    def __init__(self, future):
        super().__init__("auth token pending")
        self.future = future


# The caller of the request whose handler is running (None: not a stamped method).
CALLER: contextvars.ContextVar[Optional[Caller]] = contextvars.ContextVar(
    "kvcore_auth_caller", default=None)


# A client call with no user (auth on): etcd's empty AuthInfo, refused at apply.
ANONYMOUS = Caller("", 0)
TRUSTED_REV = 2 ** 64 - 1
TRUSTED = Caller("", TRUSTED_REV)

# The permission check a linearizable read repeats after its wait (None: none).
RECHECK: contextvars.ContextVar = contextvars.ContextVar("kvcore_auth_recheck", default=None)


def stamp(caller: Caller, op: int, payload: bytes) -> bytes:
    name = caller.encode()
    return _HEAD.pack(caller.rev, len(name)) + name + bytes((op,)) + payload


def unstamp(data: bytes) -> tuple[Caller, int, bytes]:
    rev, n = _HEAD.unpack_from(data)
    at = _HEAD.size
    name = bytes(data[at:at + n]).decode()
    return Caller(name, rev), data[at + n], bytes(data[at + n + 1:])


# A worker checks a Range itself (kvcore/worker/authview.py) once the core has told it
# who a token names: u64 the caller's auth revision, u64 the store's revision when
# asked, f64 seconds the answer may be reused, the user name. Empty: ask the core.
_WHO = struct.Struct("<QQd")


def pack_who(caller: Caller, store_rev: int, reuse_s: float) -> bytes:
    return _WHO.pack(caller.rev, store_rev, reuse_s) + caller.encode()


def unpack_who(data: bytes) -> Optional[tuple[Caller, int, float]]:
    if not data:
        return None
    rev, store_rev, reuse_s = _WHO.unpack_from(data)
    return Caller(bytes(data[_WHO.size:]).decode(), rev), store_rev, reuse_s
