"""Unary gRPC calls over one multiplexed HTTP/2 connection to the first endpoint of a
list that answers.

The connection is opened on the first call, to the endpoint last in use, then the
next ones in order; when it goes (closed, GOAWAY) the next call opens another. When
no endpoint can be reached, calls raise `NotSent` at once for a short while (the
caller sends them another way, one that waits for the cluster) instead of each
trying to connect again.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Optional

from . import framing as h2
from .connection import Call, CallError, Connection, DEADLINE_EXCEEDED, NotSent, \
    RESOURCE_EXHAUSTED

CONNECT_TIMEOUT = 1.0     # per endpoint, TCP connect and the peer's SETTINGS
RETRY_AFTER = 1.0         # after every endpoint failed, calls skip connecting this long


class UnaryClient:
    def __init__(self, endpoints: list, authority: str, max_send: int, max_recv: int,
                 ssl_context: Optional[ssl.SSLContext] = None):
        """endpoints: [(host, port)], tried in order; authority: the :authority sent;
        ssl_context: TLS to every endpoint (each checked against its own host)."""
        self.endpoints = endpoints
        self.ssl = ssl_context
        self.authority = authority
        self.max_send = max_send
        self.max_recv = max_recv
        self.conn: Optional[Connection] = None
        self._index = 0
        self._connecting: Optional[asyncio.Future] = None
        self._down_until = 0.0
        self._blocks: dict = {}       # (path, metadata) -> HPACK header block
        self._closed = False

    async def call(self, path: str, request: bytes, metadata: tuple = (),
                   timeout: Optional[float] = None) -> bytes:
        """The response message of one unary call. Raises CallError (a gRPC status;
        DeadlineExceeded "Deadline Exceeded" when `timeout` passes here) or NotSent
        (the request was not processed: no endpoint reachable, stream refused)."""
        if len(request) > self.max_send:
            # grpc-go's client words, as etcd's grpc-proxy answers (not grpcio's "Sent
            # message larger than max"): clients such as kube-apiserver show them.
            raise CallError(RESOURCE_EXHAUSTED, f"trying to send message larger than max "
                                                f"({len(request)} vs. {self.max_send})")
        conn = self.conn
        if conn is None or not conn.usable:
            conn = await self._connection()
        loop = conn.loop
        key = (path, metadata)
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) > 1024:
                self._blocks.clear()
            block = self._blocks[key] = h2.request_header_block(
                path, self.authority, [(k, v) for k, v in metadata])
        if timeout is not None:
            block += h2.encode_headers([("grpc-timeout", _grpc_timeout(timeout))])
        fut = loop.create_future()
        call = Call(fut, block, h2.grpc_message(request))
        conn.start(call)
        if timeout is not None:
            call.timer = loop.call_later(timeout, _expire, conn, call)
        try:
            return await fut
        except asyncio.CancelledError:
            conn.cancel(call)
            if call.timer is not None:
                call.timer.cancel()
            raise

    async def _connection(self) -> Connection:
        if self._connecting is None:
            if self._closed or asyncio.get_running_loop().time() < self._down_until:
                raise NotSent("no endpoint reachable")
            self._connecting = asyncio.ensure_future(self._connect())
        fut = self._connecting
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done() and self._connecting is fut:
                self._connecting = None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        errors = []
        for i in range(len(self.endpoints)):
            idx = (self._index + i) % len(self.endpoints)
            host, port = self.endpoints[idx]
            try:
                conn = await self._dial(loop, host, port)
            except (OSError, asyncio.TimeoutError, ConnectionError) as e:   # ssl.SSLError too
                errors.append(f"{host}:{port}: {e or type(e).__name__}")
                continue
            self._index = idx
            self.conn = conn
            return conn
        self._down_until = loop.time() + RETRY_AFTER
        raise NotSent("no endpoint reachable (" + "; ".join(errors) + ")")

    async def _dial(self, loop, host: str, port: int) -> Connection:
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: Connection(loop, self.max_recv, self._gone), host, port,
            family=socket.AF_UNSPEC, ssl=self.ssl,
            server_hostname=host if self.ssl is not None else None), CONNECT_TIMEOUT)
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), CONNECT_TIMEOUT)
        except BaseException:
            conn.close()
            raise
        if self._closed:
            conn.close()
            raise ConnectionError("client closed")
        return conn

    def _gone(self, conn: Connection) -> None:
        if self.conn is conn:
            self.conn = None

    def close(self) -> None:
        self._closed = True
        if self.conn is not None:
            self.conn.close()


def _expire(conn: Connection, call: Call) -> None:
    call.timer = None
    conn.cancel(call)
    if not call.fut.done():
        call.fut.set_exception(CallError(DEADLINE_EXCEEDED, "Deadline Exceeded"))


def _grpc_timeout(seconds: float) -> str:
    """grpc-timeout value: at most 8 digits and a unit."""
    ms = max(0, int(seconds * 1000))
    if ms < 100_000_000:
        return f"{ms}m"
    return f"{min(int(seconds), 99_999_999)}S"
