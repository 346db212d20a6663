"""The Lease service: LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases,
LeaseKeepAlive, and the leader's expiry and checkpoint loops (etcd's lessor duties
of the server). Grants, revokes and checkpoints go through the log.

Only the leader's lessor keeps time (kvcore/lease/lessor.py): a keep-alive or a
TimeToLive that reaches a follower is answered by the leader over the peer port
(``ctx.lease_to_leader``, kvcore/server/peer_lease.py; etcd's LeaseRenew and
LeaseTimeToLive forward to the leader the same way), and the follower answers the
client with the leader's figures under its own header."""
from __future__ import annotations

import asyncio
import logging
import secrets

from kvcore.api import rpc_pb2, wire
from kvcore.api.errors import EtcdError, GrpcError, etcd_error
from kvcore.lease.lessor import MAX_LEASE_TTL
from kvcore.server import peer_lease
from kvcore.server.entry import OP_LEASE_CHECKPOINT, OP_LEASE_GRANT, OP_LEASE_REVOKE
from kvcore.services.context import log_failure
from kvcore.services.maintenance import without_header
from kvcore.services.registry import always

log = logging.getLogger("kvcore.core")

LEASE = "/etcdserverpb.Lease/"
EXPIRY_CHECK_S = 0.5   # etcd checks for expired leases every 500 ms


class LeaseService:
    def __init__(self, ctx):
        self.ctx = ctx

    def register(self, reg) -> None:
        reg.unary_handler(LEASE + "LeaseGrant", self.lease_grant)
        reg.unary_handler(LEASE + "LeaseRevoke", self.lease_revoke)
        reg.unary_handler(LEASE + "LeaseTimeToLive", self.lease_time_to_live)
        reg.unary_handler(LEASE + "LeaseLeases", self.lease_leases)
        reg.stream(LEASE + "LeaseKeepAlive", lambda out: KeepAliveStream(self, out))
        reg.applier(OP_LEASE_GRANT, self.apply_grant, capped=always)
        reg.applier(OP_LEASE_REVOKE, self.apply_revoke)
        reg.applier(OP_LEASE_CHECKPOINT, self.apply_checkpoint)
        reg.timer(self._expiry_loop)
        if self.ctx.cfg.experimental_enable_lease_checkpoint:
            reg.timer(self._checkpoint_loop)
        reg.leader_changed(self._leader_changed)
        reg.state_opened(self._state_opened)

    # ---- who keeps time ----

    def _leader_changed(self, old: int, new: int) -> None:
        ctx = self.ctx
        if new == ctx.member_id:
            ctx.lessor.promote(ctx.cfg.election_timeout / 1000)
        elif ctx.lessor.primary:
            ctx.lessor.demote()

    def _state_opened(self) -> None:
        """A lessor rebuilt from the backend (a snapshot install) keeps time if this
        member leads."""
        raft = getattr(self.ctx, "raft", None)
        if raft is not None and raft.is_leader and raft.lead == self.ctx.member_id:
            self.ctx.lessor.promote(self.ctx.cfg.election_timeout / 1000)

    async def to_leader(self, kind: int, request: bytes) -> bytes:
        """A follower's lease request, answered by the leader (response bytes without
        header); raises etcd's no-leader/timeout errors when none answers in time.
        Returns None when this member has become the leader meanwhile."""
        ctx = self.ctx
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.request_timeout
        while True:
            if ctx.lessor.primary:
                return None
            lead = ctx.raft.lead
            left = deadline - loop.time()
            if lead and lead != ctx.member_id and left > 0:
                try:
                    return await ctx.lease_to_leader(lead, kind, request, min(left, 2.0))
                except (peer_lease.NotLeader, OSError, ConnectionError,
                        asyncio.TimeoutError):
                    pass
            if loop.time() >= deadline:
                raise etcd_error(EtcdError.TIMEOUT if lead else EtcdError.NO_LEADER)
            await asyncio.sleep(0.05)

    def answer_peer(self, kind: int, request: bytes) -> tuple:
        """The leader's side of to_leader: (status, response bytes without header)."""
        if not self.ctx.lessor.primary:
            return peer_lease.NOT_LEADER, b""
        if kind == peer_lease.RENEW and not self.ctx.leader_confirmed():
            return peer_lease.NOT_LEADER, b""    # the follower asks again shortly
        if kind == peer_lease.RENEW:
            lid = rpc_pb2.LeaseKeepAliveRequest.FromString(request).ID
            return peer_lease.OK, rpc_pb2.LeaseKeepAliveResponse(
                ID=lid, TTL=self.renew(lid)).SerializeToString()
        if kind == peer_lease.TIME_TO_LIVE:
            return peer_lease.OK, self._time_to_live(
                rpc_pb2.LeaseTimeToLiveRequest.FromString(request)).SerializeToString()
        return peer_lease.ERROR, b"unknown lease request"

    def _respond(self, msg) -> bytes:
        return wire.with_header(self.ctx.header(self.ctx.store.current_rev),
                                without_header(msg))

    # ---- handlers ----

    def lease_grant(self, req: bytes):
        ctx = self.ctx
        r = rpc_pb2.LeaseGrantRequest.FromString(req)
        if r.TTL > MAX_LEASE_TTL:
            raise etcd_error(EtcdError.LEASE_TTL_TOO_LARGE)
        payload = req
        if r.ID == 0:
            lease_id = 0
            while lease_id == 0 or ctx.lessor.exists(lease_id):
                lease_id = secrets.randbits(63)
            # Protobuf keeps the last value of a repeated scalar field: appending
            # the ID (field 2) sets it without re-serializing the request.
            payload = req + _ID_TAG + _varint(lease_id)
        # A given ID is checked at apply only (apply_grant), as etcd does: this
        # member's lessor may lag the log (a revoke of that ID not applied here yet).
        return ctx.quota.check(len(req)) or ctx.propose(OP_LEASE_GRANT, payload)

    def lease_revoke(self, req: bytes):
        # "lease not found" is decided at apply (apply_revoke), in log order, as etcd
        # does: a member still catching up may not have applied the grant yet, and a
        # client takes "not found" for "revoked" (docs/decisions.md).
        rpc_pb2.LeaseRevokeRequest.FromString(req)    # malformed: refused here
        return self.ctx.propose(OP_LEASE_REVOKE, req)

    def lease_time_to_live(self, req: bytes):
        r = rpc_pb2.LeaseTimeToLiveRequest.FromString(req)
        if self.ctx.lessor.primary:
            return self._respond(self._time_to_live(r))
        # The leader's answer even for a lease unknown here (a grant not applied here
        # yet), as etcd forwards every TimeToLive of a follower.
        return asyncio.ensure_future(self._time_to_live_from_leader(r, req))

    async def _time_to_live_from_leader(self, r, req: bytes) -> bytes:
        body = await self.to_leader(peer_lease.TIME_TO_LIVE, req)
        if body is None:   # this member leads now
            return self._respond(self._time_to_live(r))
        return self._respond(rpc_pb2.LeaseTimeToLiveResponse.FromString(body))

    def _time_to_live(self, r) -> rpc_pb2.LeaseTimeToLiveResponse:
        info = self.ctx.lessor.time_to_live(r.ID)
        if info is None:
            return rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1)
        ttl, granted, keys = info
        return rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID, TTL=ttl, grantedTTL=granted,
                                               keys=keys if r.keys else [])

    def lease_leases(self, req: bytes):
        return self._respond(rpc_pb2.LeaseLeasesResponse(
            leases=[rpc_pb2.LeaseStatus(ID=i) for i in sorted(self.ctx.lessor.leases)]))

    def renew(self, lease_id: int) -> int:
        lessor = self.ctx.lessor
        ttl = lessor.renew(lease_id)
        if ttl > 0:
            self.ctx.metrics.leases_renewed += 1
            lease = lessor.lookup(lease_id)
            if lease is not None and lease.remaining:
                # A checkpointed remaining TTL no longer holds after a renewal.
                lessor.clear_remaining(lease)
                self._checkpoint([(lease_id, 0)])
        return ttl

    # ---- appliers ----

    def apply_grant(self, txn, w, req: bytes):
        lessor = self.ctx.lessor
        r = rpc_pb2.LeaseGrantRequest.FromString(req)
        if lessor.exists(r.ID):
            raise etcd_error(EtcdError.LEASE_EXIST)
        lease = lessor.grant(txn, r.ID, lessor.effective_ttl(r.TTL))
        self.ctx.metrics.leases_granted += 1
        self.ctx.metrics.lease_ttl.observe(lease.ttl)
        return (self.ctx.store.current_rev,
                rpc_pb2.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl).SerializeToString())

    def apply_revoke(self, txn, w, req: bytes):
        lessor = self.ctx.lessor
        r = rpc_pb2.LeaseRevokeRequest.FromString(req)
        if not lessor.exists(r.ID):
            raise etcd_error(EtcdError.LEASE_NOT_FOUND)
        self.ctx.metrics.leases_revoked += 1
        for key in lessor.revoke(txn, r.ID):
            w.delete_range(key, None)
        return w.rev, b""

    def apply_checkpoint(self, txn, w, req: bytes):
        r = rpc_pb2.LeaseCheckpointRequest.FromString(req)
        for cp in r.checkpoints:
            self.ctx.lessor.checkpoint(txn, cp.ID, cp.remaining_TTL)
        return self.ctx.store.current_rev, b""

    # ---- the leader's loops ----

    def _checkpoint(self, cps) -> None:
        req = rpc_pb2.LeaseCheckpointRequest(
            checkpoints=[rpc_pb2.LeaseCheckpoint(ID=i, remaining_TTL=t) for i, t in cps])
        self.ctx.propose_internal(OP_LEASE_CHECKPOINT,
                                  req.SerializeToString()).add_done_callback(log_failure)

    async def _expiry_loop(self) -> None:
        """The leader revokes expired leases through the log."""
        ctx = self.ctx
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            if not ctx.leader_confirmed():
                # A leader that stalled may have been replaced, and its successor keeps
                # these leases alive; its revocations, forwarded once it steps down,
                # would end them early (etcd 3.5.8+ ensures leadership first too).
                continue
            for lid in ctx.lessor.expired():
                ctx.metrics.lease_expired += 1
                lease = ctx.lessor.lookup(lid)
                lease.revoking = True
                fut = ctx.propose_internal(
                    OP_LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lid).SerializeToString())
                fut.add_done_callback(lambda f, l=lease: _revoke_done(f, l))

    async def _checkpoint_loop(self) -> None:
        interval = self.ctx.cfg.experimental_lease_checkpoint_interval
        while True:
            await asyncio.sleep(interval)
            cps = self.ctx.lessor.checkpoints()
            if cps:
                self._checkpoint(cps)


_ID_TAG = bytes(((2 << 3) | 0,))   # LeaseGrantRequest.ID: field 2, varint


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _revoke_done(fut, lease) -> None:
    if fut.cancelled() or fut.exception() is not None:
        lease.revoking = False  # try again at the next check


class KeepAliveStream:
    """LeaseKeepAlive stream: each request renews a lease (the leader's lessor; a
    follower asks the leader and answers when it has).

    A client renews one lease on its stream again and again, so the last request's
    bytes and the last answer are kept: a repeated request is not decoded again,
    and the answer is reused while the header (revision, term) and the TTL hold."""

    __slots__ = ("service", "out", "reply", "_req", "_id", "_key", "_resp", "_at_leader",
                 "_half_closed")

    def __init__(self, service: LeaseService, out):
        self.service = service
        self.out = out
        self._at_leader = 0          # renewals asked of the leader, not answered yet
        self._half_closed = False
        # An answer per request takes no stream credit (framing.S_REPLY).
        self.reply = getattr(out, "reply", None) or out.send
        self._req = self._key = None
        self._id = 0
        self._resp = b""

    def on_message(self, payload: bytes) -> None:
        if payload == self._req:
            lease_id = self._id
        else:
            lease_id = rpc_pb2.LeaseKeepAliveRequest.FromString(payload).ID
            self._req, self._id = payload, lease_id
        ctx = self.service.ctx
        if not ctx.lessor.primary:
            self._at_leader += 1   # now: a half-close may follow in the same read
            asyncio.ensure_future(self._renew_at_leader(lease_id, payload))
            return
        if self._at_leader or not ctx.leader_confirmed():
            # leadership not confirmed lately (or earlier answers still pending, which
            # this one must follow): renew only once a quorum says this member leads
            self._at_leader += 1
            asyncio.ensure_future(self._renew_confirmed(lease_id, payload))
            return
        self._answer(lease_id, self.service.renew(lease_id))

    @property
    def keep_after_half_close(self) -> bool:
        """A client that half-closes still gets the answers to what it sent (etcd
        answers each request before it reads the next, or the end)."""
        return self._at_leader > 0

    def on_half_close(self) -> None:
        self._half_closed = True

    async def _renew_confirmed(self, lease_id: int, payload: bytes) -> None:
        ctx = self.service.ctx
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ctx.request_timeout
        try:
            while True:
                ok = ctx.leader_confirmed() or await ctx.confirm_leadership()
                if ok and ctx.lessor.primary:
                    ttl = self.service.renew(lease_id)
                    break
                if not ctx.lessor.primary:   # no longer the leader: as a follower does
                    body = await self.service.to_leader(peer_lease.RENEW, payload)
                    if body is not None:
                        ttl = rpc_pb2.LeaseKeepAliveResponse.FromString(body).TTL
                        break
                if loop.time() >= deadline:
                    raise etcd_error(EtcdError.TIMEOUT)
        except GrpcError as e:
            self.out.end(e.code, e.message)
            return
        finally:
            self._at_leader -= 1
        self._answer(lease_id, ttl)
        if self._half_closed and not self._at_leader:
            self.out.end()

    async def _renew_at_leader(self, lease_id: int, payload: bytes) -> None:
        try:
            body = await self.service.to_leader(peer_lease.RENEW, payload)
        except GrpcError as e:   # etcd ends the stream with the error
            self.out.end(e.code, e.message)
            return
        finally:
            self._at_leader -= 1
        ttl = (self.service.renew(lease_id) if body is None
               else rpc_pb2.LeaseKeepAliveResponse.FromString(body).TTL)
        self._answer(lease_id, ttl)
        if self._half_closed and not self._at_leader:
            self.out.end()

    def _answer(self, lease_id: int, ttl: int) -> None:
        ctx = self.service.ctx
        hdr = ctx.header(ctx.store.current_rev)
        key = self._key
        # (The header bytes object stays the same one while revision and term do.)
        if key is None or hdr is not key[0] or lease_id != key[1] or ttl != key[2]:
            # LeaseKeepAliveResponse by hand (header, ID, TTL): what protobuf writes.
            self._key = (hdr, lease_id, ttl)
            self._resp = wire.with_header(hdr, wire.field_varint(2, lease_id) +
                                          wire.field_varint(3, ttl))
        self.reply(self._resp)


def register(ctx, reg) -> LeaseService:
    s = LeaseService(ctx)
    s.register(reg)
    return s
