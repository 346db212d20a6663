"""``--resolver-prefix``/``--resolver-ttl``, as etcd's grpcproxy/register.go: the proxy
registers its advertised client URL under ``<prefix>/<url>`` with a lease of the TTL
(clientv3's endpoints manager format), keeps the lease alive, and registers again at
most once a second when the lease is lost. The key is written through the proxy's own
upstream, so ``--namespace`` prefixes it too, as in etcd (whose namespace wraps the
client the registration uses)."""
from __future__ import annotations

import asyncio
import json
import logging
import socket

from kvcore import logs
from kvcore.api import rpc_pb2
from kvcore.engine.base import CallContext, GrpcError

log = logging.getLogger("kvcore.proxy.register")

GRANT = "/etcdserverpb.Lease/LeaseGrant"
REVOKE = "/etcdserverpb.Lease/LeaseRevoke"
KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
TXN = "/etcdserverpb.KV/Txn"
RETRY = 1.0                        # registerRetryRate: one attempt a second


def endpoint_value(addr: str) -> bytes:
    """endpoints/internal.Update{Op: Add, Addr, Metadata} with grpcproxy's meta JSON."""
    meta = json.dumps({"name": socket.gethostname()}, separators=(",", ":"))
    return json.dumps({"Op": 0, "Addr": addr, "Metadata": meta},
                      separators=(",", ":")).encode()


class Registration:
    def __init__(self, up, prefix: str, addr: str, ttl: int):
        self.up = up
        self.key = f"{prefix}/{addr}".encode()
        self.addr = addr
        self.ttl = ttl
        self.task = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _ctx(self, path: str, timeout: float = 5.0) -> CallContext:
        return CallContext(path, deadline=asyncio.get_running_loop().time() + timeout)

    async def _run(self) -> None:
        while True:
            started = asyncio.get_running_loop().time()
            try:
                lease = await self._register()
                await self._keep_alive(lease)
                log.warning("session expired; possible network partition or server restart")
                log.warning("creating a new session to rejoin")
            except GrpcError as e:
                log.warning("failed to create a session", extra=logs.fields(error=e.message))
            except Exception as e:          # a broken upstream stream
                log.warning("failed to create a session", extra=logs.fields(error=str(e)))
            await asyncio.sleep(max(0.0, started + RETRY - asyncio.get_running_loop().time()))

    async def _register(self) -> int:
        grant = rpc_pb2.LeaseGrantResponse.FromString(await self.up.unary(
            GRANT, rpc_pb2.LeaseGrantRequest(TTL=self.ttl).SerializeToString(),
            self._ctx(GRANT)))
        txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=self.key, value=endpoint_value(self.addr), lease=grant.ID))])
        await self.up.unary(TXN, txn.SerializeToString(), self._ctx(TXN))
        log.info("registered session with lease",
                 extra=logs.fields(addr=self.addr, **{"lease-ttl": self.ttl}))
        return grant.ID

    async def _keep_alive(self, lease: int) -> None:
        """Returns when the lease is gone (clientv3 keeps alive every TTL/3)."""
        req = rpc_pb2.LeaseKeepAliveRequest(ID=lease).SerializeToString()

        async def requests():
            while True:
                yield req
                await asyncio.sleep(max(self.ttl / 3.0, 0.5))
        call = self.up.channel.stream_stream(KEEPALIVE)(requests(), wait_for_ready=True)
        try:
            async for raw in call:
                if rpc_pb2.LeaseKeepAliveResponse.FromString(raw).TTL <= 0:
                    return
        finally:
            call.cancel()
