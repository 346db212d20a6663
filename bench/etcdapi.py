"""Setup calls (probe, auth, leader lookup, seeding keys) over the same HTTP/2 client."""
from __future__ import annotations

import asyncio

import uvloop

from kvcore.h2client import framing as h2

from . import client

KV = "/etcdserverpb.KV/"
MAINT = "/etcdserverpb.Maintenance/"
AUTH = "/etcdserverpb.Auth/"
LEASE = "/etcdserverpb.Lease/"


def pb():
    from kvcore.api import rpc_pb2
    return rpc_pb2


class Session:
    """One connection used for a few ordinary calls."""

    def __init__(self, host: str, port: int, token: str | None = None, timeout: float = 5.0):
        self.host, self.port = host, port
        self.token = token
        self.timeout = timeout
        self.conn: client.Conn | None = None

    def headers(self):
        return [("token", self.token)] if self.token else []

    async def __aenter__(self):
        self.conn = await client.connect(self.host, self.port, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc):
        if self.conn is not None:
            self.conn.close()

    def block(self, path: str) -> bytes:
        return h2.request_header_block(path, f"{self.host}:{self.port}", self.headers())

    async def call(self, path: str, req, resp_cls):
        data = await self.conn.call(self.block(path), req.SerializeToString(), self.timeout)
        out = resp_cls()
        try:
            out.ParseFromString(data)
        except Exception as e:
            raise client.EndpointError(
                f"{self.host}:{self.port} answered {path} with bytes that are not a "
                f"{resp_cls.DESCRIPTOR.name} ({e}); is it an etcd v3 endpoint?") from None
        return out

    async def status(self):
        p = pb()
        return await self.call(MAINT + "Status", p.StatusRequest(), p.StatusResponse)

    async def put(self, key: bytes, value: bytes, lease: int = 0):
        p = pb()
        return await self.call(KV + "Put", p.PutRequest(key=key, value=value, lease=lease),
                               p.PutResponse)

    async def range(self, key: bytes, serializable=False):
        p = pb()
        return await self.call(KV + "Range", p.RangeRequest(key=key, serializable=serializable),
                               p.RangeResponse)

    async def authenticate(self, user: str, password: str) -> str:
        p = pb()
        r = await self.call(AUTH + "Authenticate",
                            p.AuthenticateRequest(name=user, password=password),
                            p.AuthenticateResponse)
        return r.token

    async def lease_grant(self, ttl: int) -> int:
        p = pb()
        r = await self.call(LEASE + "LeaseGrant", p.LeaseGrantRequest(TTL=ttl),
                            p.LeaseGrantResponse)
        return r.ID


AUTH_HINTS = ("user name is empty", "invalid auth token", "permission denied",
              "authentication failed", "auth: ")


def explain_call_error(e: client.CallError, user_given: bool) -> tuple[str, int]:
    """(message, exit code) for an error answered by the server."""
    low = e.message.lower()
    if e.status in (3, 7, 16) and any(h in low for h in AUTH_HINTS):
        if user_given:
            return (f"authentication failed: the server says {e.message!r} "
                    f"(check --user NAME:PASSWORD and the user's roles)", 3)
        return (f"the server requires authentication ({e.message!r}): "
                f"pass --user NAME:PASSWORD", 3)
    if e.status == 12:
        return f"the server does not implement this call: {e.message}", 4
    return f"the server answered {e}", 4


async def prepare(endpoints, user: str | None, target_leader: bool, timeout: float = 5.0,
                  probe_key: bytes = b"\x00kvcore-bench-probe"):
    """Check every endpoint (connect, HTTP/2, gRPC, auth), authenticate, pick the
    leader if asked. Returns (endpoints, token, status by endpoint). Raises
    client.EndpointError or client.CallError."""
    token = None
    statuses = {}
    for host, port in endpoints:
        async with Session(host, port, timeout=timeout) as s:
            if user and token is None:
                name, _, password = user.partition(":")
                token = await s.authenticate(name, password)
            s.token = token
            if target_leader:
                try:
                    statuses[(host, port)] = await s.status()
                except client.CallError as e:
                    if e.status != 12:   # a server without Maintenance still serves KV
                        raise
                    statuses[(host, port)] = None
            # a serializable range exercises the KV service and the auth check
            await s.range(probe_key, serializable=True)
    if target_leader:
        leaders = [ep for ep, st in statuses.items()
                   if st is not None and st.leader and st.header.member_id == st.leader]
        if not leaders:
            raise client.EndpointError("--target-leader: none of the endpoints is the leader "
                                       "(or Status is not served)")
        endpoints = leaders[:1]
    return endpoints, token, statuses


def run_sync(coro, timeout: float = 60.0):
    """Run ``coro`` to completion on a fresh uvloop; its exceptions propagate as they are
    (the coroutine runs once: no fallback may await it again)."""
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return uvloop.run(main())
