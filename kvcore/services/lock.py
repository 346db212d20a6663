"""v3lockpb.Lock: etcd's server-side lock (server/etcdserver/api/v3lock), which runs
the Go client's concurrency.Mutex (client/v3/concurrency/mutex.go, as of etcd 3.5)
for the caller's lease.

Lock(name, lease):
  key = name + "/" + "%x" % lease (lease 0: a new orphaned 60 s lease, as etcd's
  session grants one); one Txn puts the key with the lease unless it exists, and
  reads the key under name/ created first. If that is ours the lock is held. Else
  wait until every key under name/ created before ours is deleted (waitDeletes), then
  check our key survived ("mutex: session is expired" if the lease ran out while
  waiting). Answers {header, key}.
Unlock(key): Delete(key).

A caller that goes away while waiting: etcd deletes the waiter's key; kvcore too (the
worker passes the call's cancellation to the core), also when the caller goes away
while the Txn putting the key is still in flight: the key is deleted once it is
applied (etcd's Mutex returns there and leaves it queued until its lease ends).
"""
from __future__ import annotations

import asyncio

from kvcore.api import rpc_pb2, v3lock_pb2
from kvcore.concurrency.client import (LocalClient, caller_gone, create_rev_is, first_create,
                                       op_get, op_put)
from kvcore.engine.base import GrpcError, StatusCode

LOCK = "/v3lockpb.Lock/"

ERR_SESSION_EXPIRED = "mutex: session is expired"   # concurrency.ErrSessionExpired


class LockService:
    def __init__(self, ctx, kv, lease):
        self.ctx = ctx
        self.client = LocalClient(ctx, kv, lease)

    def register(self, reg) -> None:
        unary, streams = reg.unary, reg.streams
        unary[LOCK + "Lock"] = self.lock
        unary[LOCK + "Unlock"] = self.unlock

    def lock(self, req: bytes):
        r = v3lock_pb2.LockRequest.FromString(req)
        return self.client.run(self._lock(r.name, r.lease))

    def unlock(self, req: bytes):
        r = v3lock_pb2.UnlockRequest.FromString(req)
        return self.client.run(self._unlock(r.key))

    async def _lock(self, name: bytes, lease: int) -> bytes:
        c = self.client
        lease = await c.session_lease(lease)
        pfx = name + b"/"
        key = pfx + b"%x" % lease
        # tryAcquire: put self in the waiters (oldest holds the lock), or reuse the key
        # this lease already has; and fetch the owner in the same round trip.
        async def leave(resp) -> None:
            if resp.succeeded:   # the key this call put: out of the queue again
                await c.delete(key)

        # A caller giving up while this Txn is in flight (a slow disk) must not leave
        # its key queued: it is deleted once the Txn is applied.
        resp = await c.to_the_end(c.txn(rpc_pb2.TxnRequest(
            compare=[create_rev_is(key, 0)],
            success=[op_put(key, b"", lease), rpc_pb2.RequestOp(request_range=first_create(pfx))],
            failure=[op_get(key), rpc_pb2.RequestOp(request_range=first_create(pfx))])), leave)
        my_rev = resp.header.revision
        if not resp.succeeded:
            my_rev = resp.responses[0].response_range.kvs[0].create_revision
        owner = resp.responses[1].response_range.kvs
        if not owner or owner[0].create_revision == my_rev:
            return _lock_response(resp.header, key)
        try:
            await c.wait_deletes(pfx, my_rev - 1)
            # Make sure the session did not expire: our key must still be there.
            got = await c.get(rpc_pb2.RangeRequest(key=key))
        except asyncio.CancelledError as e:
            if caller_gone(e):
                c.spawn(c.delete(key))   # leave the queue
            raise
        except GrpcError:
            await c.delete_quietly(key)
            raise
        if not got.kvs:
            raise GrpcError(StatusCode.UNKNOWN, ERR_SESSION_EXPIRED)
        return _lock_response(got.header, key)

    async def _unlock(self, key: bytes) -> bytes:
        resp = await self.client.delete(key)
        return v3lock_pb2.UnlockResponse(header=resp.header).SerializeToString()


def _lock_response(header: rpc_pb2.ResponseHeader, key: bytes) -> bytes:
    return v3lock_pb2.LockResponse(header=header, key=key).SerializeToString()


def register(ctx, reg) -> LockService:
    """After the KV and Lease services: the recipes call them."""
    s = LockService(ctx, reg.services["kv"], reg.services["lease"])
    s.register(reg)
    return s
