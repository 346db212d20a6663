"""v3electionpb.Election: etcd's server-side election (server/etcdserver/api/v3election),
which runs the Go client's concurrency.Election (client/v3/concurrency/election.go).

Candidates of election ``name`` are keys name/<lease in hex>; the one created first
leads, and its value is the election's value.

Campaign(name, lease, value): put our key with the value and lease unless it exists
  (if it does, with another value: Proclaim the new one), then wait until every
  candidate created before ours is gone. -> LeaderKey{name, key, rev (our key's
  create revision), lease}; the header is the first Txn's.
Proclaim(leader, value): put the value if leader.key still has create revision
  leader.rev, else "election: not leader".
Resign(leader): delete leader.key if it still has create revision leader.rev.
Leader(name): the leader's KeyValue, or "election: no leader".
Observe(name): server-streaming: the leader's KeyValue now (or once there is one) and
  again at every change of it: a new value, or a new leader after a delete.

As in etcd, Proclaim and Resign with lease 0 grant a new 60 s lease (the server's
session for them does), and every error reaches the caller with status UNKNOWN.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from kvcore.api import kv_pb2, rpc_pb2, v3election_pb2 as epb
from kvcore.concurrency.client import (LocalClient, WatchLost, caller_gone, create_rev_is,
                                       first_create, op_delete, op_get, op_put, prefix_end)
from kvcore.engine.base import GrpcError, StatusCode

log = logging.getLogger("kvcore.concurrency")

ELECTION = "/v3electionpb.Election/"

ERR_NOT_LEADER = "election: not leader"                  # concurrency.ErrElectionNotLeader
ERR_NO_LEADER = "election: no leader"                    # concurrency.ErrElectionNoLeader
ERR_MISSING_LEADER_KEY = '"leader" field must be provided'   # v3election.ErrMissingLeaderKey

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


def _error(message: str) -> GrpcError:
    return GrpcError(StatusCode.UNKNOWN, message)


class ElectionService:
    def __init__(self, ctx, kv, lease):
        self.ctx = ctx
        self.client = LocalClient(ctx, kv, lease)

    def register(self, reg) -> None:
        unary, streams = reg.unary, reg.streams
        unary[ELECTION + "Campaign"] = self.campaign
        unary[ELECTION + "Proclaim"] = self.proclaim
        unary[ELECTION + "Leader"] = self.leader
        unary[ELECTION + "Resign"] = self.resign
        streams[ELECTION + "Observe"] = lambda out: _Observe(self, out)

    # ---- handlers ----

    def campaign(self, req: bytes):
        return self.client.run(self._campaign(epb.CampaignRequest.FromString(req)))

    def proclaim(self, req: bytes):
        return self.client.run(self._proclaim(epb.ProclaimRequest.FromString(req)))

    def leader(self, req: bytes):
        return self.client.run(self._leader(epb.LeaderRequest.FromString(req).name))

    def resign(self, req: bytes):
        return self.client.run(self._resign(epb.ResignRequest.FromString(req)))

    # ---- concurrency.Election ----

    async def _campaign(self, r) -> bytes:
        c = self.client
        lease = await c.session_lease(r.lease)
        pfx = r.name + b"/"
        key = pfx + b"%x" % lease
        async def withdraw(resp) -> None:
            if resp.succeeded:   # the key this call put (a caller gone during the Txn)
                await self._resign_txn(key, resp.header.revision)

        resp = await c.to_the_end(c.txn(rpc_pb2.TxnRequest(
            compare=[create_rev_is(key, 0)], success=[op_put(key, r.value, lease)],
            failure=[op_get(key)])), withdraw)
        rev = resp.header.revision
        if not resp.succeeded:
            kv = resp.responses[0].response_range.kvs[0]
            rev = kv.create_revision
            if kv.value != r.value:
                try:
                    await self._proclaim_txn(key, rev, lease, r.value)
                except GrpcError:
                    await self._resign_quietly(key, rev)
                    raise
        try:
            await c.wait_deletes(pfx, rev - 1)
        except asyncio.CancelledError as e:
            if caller_gone(e):
                c.spawn(self._resign_txn(key, rev))   # withdraw
            raise
        leader = epb.LeaderKey(name=r.name, key=key, rev=rev, lease=lease)
        return epb.CampaignResponse(header=resp.header, leader=leader).SerializeToString()

    async def _proclaim(self, r) -> bytes:
        if not r.HasField("leader"):
            raise _error(ERR_MISSING_LEADER_KEY)
        lease = await self.client.session_lease(r.leader.lease)
        hdr = await self._proclaim_txn(r.leader.key, r.leader.rev, lease, r.value)
        return epb.ProclaimResponse(header=hdr).SerializeToString()

    async def _resign(self, r) -> bytes:
        if not r.HasField("leader"):
            raise _error(ERR_MISSING_LEADER_KEY)
        await self.client.session_lease(r.leader.lease)
        hdr = await self._resign_txn(r.leader.key, r.leader.rev)
        return epb.ResignResponse(header=hdr).SerializeToString()

    async def _leader(self, name: bytes) -> bytes:
        resp = await self.client.get(first_create(name + b"/"))
        if not resp.kvs:
            raise _error(ERR_NO_LEADER)
        return epb.LeaderResponse(header=resp.header, kv=resp.kvs[0]).SerializeToString()

    async def _proclaim_txn(self, key: bytes, rev: int, lease: int, value: bytes):
        resp = await self.client.txn(rpc_pb2.TxnRequest(
            compare=[create_rev_is(key, rev)], success=[op_put(key, value, lease)]))
        if not resp.succeeded:
            raise _error(ERR_NOT_LEADER)
        return resp.header

    async def _resign_txn(self, key: bytes, rev: int):
        resp = await self.client.txn(rpc_pb2.TxnRequest(
            compare=[create_rev_is(key, rev)], success=[op_delete(key)]))
        return resp.header

    async def _resign_quietly(self, key: bytes, rev: int) -> None:
        try:
            await self._resign_txn(key, rev)
        except GrpcError:
            pass


class _Observe:
    """Election.Observe: one server-streaming call (concurrency.Election.observe).

    The stream ends with OK when observing cannot go on (a read fails, or compaction
    overtakes a watcher), as etcd's does when its observe channel closes. Each
    message waits for the stream's flow-control room."""

    keep_after_half_close = True

    def __init__(self, svc: ElectionService, out):
        self.svc = svc
        self.out = out
        self.task: Optional[asyncio.Task] = None
        self._room: Optional[asyncio.Future] = None

    def on_message(self, payload: bytes) -> None:
        if self.task is None:
            name = epb.LeaderRequest.FromString(payload).name
            self.out.on_credit = self._credit
            self.task = self.svc.ctx.loop.create_task(self._run(name))

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _credit(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    async def _send(self, header, kv) -> None:
        while not self.out.can_send():
            if self.out.closed:
                raise asyncio.CancelledError()
            self._room = self.svc.ctx.loop.create_future()
            await self._room
        self.out.send(epb.LeaderResponse(header=header, kv=kv).SerializeToString())

    async def _run(self, name: bytes) -> None:
        try:
            await self._observe(name + b"/")
        except asyncio.CancelledError:
            return
        except (GrpcError, WatchLost) as e:
            log.debug("observe %r ended: %r", name, e)
        self.out.end()

    async def _observe(self, pfx: bytes) -> None:
        c = self.svc.client
        while True:
            resp = await c.get(first_create(pfx))
            if resp.kvs:
                hdr, kv = resp.header, resp.kvs[0]
            else:
                # No leader: wait for the first key put under the prefix (a delete
                # would only make this loop spin).
                hdr = kv = None
                w = c.watch(pfx, prefix_end(pfx), resp.header.revision)
                try:
                    while kv is None:
                        wr = await w.next()
                        for ev in wr.events:
                            if ev.type == PUT:
                                hdr, kv = wr.header, ev.kv
                                hdr.revision = kv.mod_revision
                                break
                finally:
                    w.close()
            await self._send(hdr, kv)
            # Follow the leader's key: each new value, until it is deleted.
            w = c.watch(kv.key, None, hdr.revision + 1)
            try:
                deleted = False
                while not deleted:
                    wr = await w.next()
                    for ev in wr.events:
                        if ev.type == DELETE:
                            deleted = True
                            break
                        await self._send(wr.header, ev.kv)
            finally:
                w.close()


def register(ctx, reg) -> ElectionService:
    """After the KV and Lease services: the recipes call them."""
    s = ElectionService(ctx, reg.services["kv"], reg.services["lease"])
    s.register(reg)
    return s
