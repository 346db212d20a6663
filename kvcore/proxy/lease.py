"""Lease keep-alives coalesced, as etcd's proxy does with one clientv3 lessor: all
client streams' keep-alives go up one LeaseKeepAlive stream, and while a keep-alive of
a lease is on its way, others for the same lease wait for its answer instead of
sending their own. Calls with an auth token are forwarded whole."""
from __future__ import annotations

import asyncio
import logging

import grpc

from kvcore.api import rpc_pb2
from kvcore.engine.base import GrpcError, StatusCode

KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
log = logging.getLogger("kvcore.proxy.lease")


class KeepAlives:
    def __init__(self, upstream):
        self.up = upstream
        self.waiting: dict = {}          # lease ID -> [asyncio.Queue of the client streams]
        self.out: asyncio.Queue = asyncio.Queue()
        self.task = None
        self.sent = 0                    # keep-alives sent upstream (for tests)

    async def serve(self, requests, send, ctx) -> None:
        if ctx.metadata.get("token"):
            return await self.up.bidi(KEEPALIVE, requests, send, ctx)
        mine: asyncio.Queue = asyncio.Queue()

        async def writer():
            while True:
                await send(await mine.get())
        wtask = asyncio.ensure_future(writer())
        try:
            async for raw in requests:
                lid = rpc_pb2.LeaseKeepAliveRequest.FromString(raw).ID
                waiters = self.waiting.get(lid)
                if waiters is None:
                    self.waiting[lid] = [mine]
                    self._send(lid)
                elif mine not in waiters:
                    waiters.append(mine)
            raise GrpcError(StatusCode.UNKNOWN, "context canceled")   # as etcd's proxy
        finally:
            for waiters in self.waiting.values():
                if mine in waiters:
                    waiters.remove(mine)
            wtask.cancel()

    def _send(self, lid: int) -> None:
        self.sent += 1
        self.out.put_nowait(rpc_pb2.LeaseKeepAliveRequest(ID=lid).SerializeToString())
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self.waiting:
            async def requests(q=self.out):
                while True:
                    yield await q.get()
            call = self.up.channel.stream_stream(KEEPALIVE)(requests(), wait_for_ready=True)
            try:
                async for raw in call:
                    lid = rpc_pb2.LeaseKeepAliveResponse.FromString(raw).ID
                    for q in self.waiting.pop(lid, ()):
                        q.put_nowait(raw)
            except grpc.aio.AioRpcError as e:
                log.warning("upstream keep-alive stream broke",
                            extra={"fields": {"error": e.details()}})
            finally:
                call.cancel()
            await asyncio.sleep(0.2)
            self.out = asyncio.Queue()
            for lid in list(self.waiting):
                self._send(lid)
