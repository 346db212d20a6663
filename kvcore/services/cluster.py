"""The Cluster service (member add/remove/update/promote/list) and MoveLeader.

Membership changes are Raft conf changes whose context is the member record; the
call returns once the change is applied on this member (the core applies conf
changes: they change Raft's configuration and the peer transport). A member's
name and client URLs go through the log as OP_MEMBER_ATTR (etcd's publish), which
this service proposes whenever a leader is known and applies. The safety checks are
etcd's (strict reconfiguration, unless --strict-reconfig-check=false): a change must
leave enough started voters for a quorum; at most one learner, and only a learner
that is in sync can be promoted.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import urlparse

from kvcore import logs
from kvcore.api import rpc_pb2, wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.raft.types import ConfChange, ConfChangeType
from kvcore.server.entry import OP_MEMBER_ATTR
from kvcore.server.membership import Member, new_member_id
from kvcore.services.context import log_failure

MAX_LEARNERS = 1
# etcd's HealthInterval: how long every voter must have been reachable for a change.
HEALTH_INTERVAL = 5.0
log = logging.getLogger(__name__)


def _check_urls(urls) -> list:
    if not urls:
        raise etcd_error(EtcdError.MEMBER_BAD_URLS)
    for u in urls:
        p = urlparse(u)
        try:
            ok = p.scheme in ("http", "https") and p.hostname and p.port
        except ValueError:
            ok = False
        if not ok:
            raise etcd_error(EtcdError.MEMBER_BAD_URLS)
    return list(urls)


class ClusterService:
    def __init__(self, ctx):
        self.ctx = ctx
        self._published = False   # this process's publish applied

    def register(self, reg) -> None:
        c = "/etcdserverpb.Cluster/"
        reg.unary_handler(c + "MemberAdd", self.member_add)
        reg.unary_handler(c + "MemberRemove", self.member_remove)
        reg.unary_handler(c + "MemberUpdate", self.member_update)
        reg.unary_handler(c + "MemberPromote", self.member_promote)
        reg.unary_handler(c + "MemberList", self.member_list)
        reg.unary_handler("/etcdserverpb.Maintenance/MoveLeader", self.move_leader)
        reg.applier(OP_MEMBER_ATTR, self.apply_member_attr)
        reg.leader_changed(self._leader_changed)

    # ---- publish: this member's name and client URLs through the log ----

    def _leader_changed(self, old: int, new: int) -> None:
        if new:
            self.ctx.loop.call_soon(self._publish_self)

    def _publish_self(self) -> None:
        ctx = self.ctx
        m = ctx.membership.members.get(ctx.member_id)
        want = (ctx.cfg.name, list(ctx.cfg.advertise_client_urls))
        # Once a process, as etcd, even when unchanged: tools (etcd's e2e suite among
        # them) wait for the "published" line before they call a member ready.
        if self._published and m is not None and (m.name, m.client_urls) == want:
            return
        req = json.dumps({"id": ctx.member_id, "name": want[0], "clientURLs": want[1]})
        ctx.propose_internal(OP_MEMBER_ATTR, req.encode()).add_done_callback(
            lambda fut: self._published_done(fut, want))

    def _published_done(self, fut, want) -> None:
        if fut.cancelled() or fut.exception() is not None:
            log_failure(fut)
            return   # the next leader change publishes again
        if not self._published:
            self._published = True
            ctx = self.ctx
            log.info("published local member to cluster through raft", extra=logs.fields(
                local_member_id=f"{ctx.member_id:x}",
                local_member_attributes=f"{{Name:{want[0]} ClientURLs:[{' '.join(want[1])}]}}",
                request_path=f"/0/members/{ctx.member_id:x}/attributes",
                cluster_id=f"{ctx.cluster_id:x}"))

    def apply_member_attr(self, txn, w, req: bytes):
        ctx = self.ctx
        d = json.loads(req)
        m = ctx.membership.members.get(d["id"])
        if m is not None:
            m.name, m.client_urls = d["name"], list(d["clientURLs"])
            ctx.membership.save(txn, m)
        return ctx.store.current_rev, b""

    # ---- helpers ----

    @property
    def ms(self):
        return self.ctx.membership

    def _members_pb(self):
        return [rpc_pb2.Member(ID=m.id, name=m.name, peerURLs=m.peer_urls,
                               clientURLs=m.client_urls, isLearner=m.is_learner)
                for m in self.ms.sorted()]

    def _header(self) -> bytes:
        c = self.ctx
        return wire.header(c.cluster_id, c.member_id, 0, c.raft.term)

    def _respond(self, msg) -> bytes:
        msg.ClearField("header")
        return wire.with_header(self._header(), msg.SerializeToString())

    def _started_voters(self) -> int:
        """Voters that published themselves (etcd counts members with a name)."""
        return sum(1 for m in self.ms.members.values() if not m.is_learner and m.name)

    def _voters(self) -> int:
        return sum(1 for m in self.ms.members.values() if not m.is_learner)

    def _voter_ids(self) -> list[int]:
        return [m.id for m in self.ms.members.values() if not m.is_learner]

    def _connected_since(self, pid: int, since: float) -> bool:
        """This member, or a peer in touch with this one since ``since`` or earlier."""
        if pid == self.ctx.member_id:
            return True
        began = self.ctx.peer_active_since(pid)
        return began is not None and began <= since

    def _then(self, applied, build):
        """A future of ``build()``, made once ``applied`` (a proposal) resolves."""
        out = self.ctx.loop.create_future()

        def done(f):
            if out.done():
                return
            if f.cancelled():
                out.cancel()
            elif f.exception() is not None:
                out.set_exception(f.exception())
            else:
                out.set_result(build())

        applied.add_done_callback(done)
        return out

    # ---- handlers ----

    def member_add(self, req: bytes):
        r = rpc_pb2.MemberAddRequest.FromString(req)
        urls = _check_urls(r.peerURLs)
        m, applied = self.add(urls, bool(r.isLearner))
        return self._then(applied, lambda: self._respond(rpc_pb2.MemberAddResponse(
            member=rpc_pb2.Member(ID=m.id, peerURLs=urls, isLearner=m.is_learner),
            members=self._members_pb())))

    def member_remove(self, req: bytes):
        r = rpc_pb2.MemberRemoveRequest.FromString(req)
        return self._then(self.remove(r.ID), lambda: self._respond(
            rpc_pb2.MemberRemoveResponse(members=self._members_pb())))

    def member_update(self, req: bytes):
        r = rpc_pb2.MemberUpdateRequest.FromString(req)
        if r.ID not in self.ms.members:
            raise etcd_error(EtcdError.MEMBER_NOT_FOUND)
        urls = _check_urls(r.peerURLs)
        return self._then(self.update(r.ID, urls), lambda: self._respond(
            rpc_pb2.MemberUpdateResponse(members=self._members_pb())))

    # ---- the changes, for the v3 handlers above and v2's /v2/members ----
    # Each checks as etcd does (raising its GrpcError) and returns a future that
    # resolves once the conf change is applied on this member.

    def add(self, urls: list, learner: bool = False):
        """-> (the new Member, applied future)."""
        # etcd 3.5.1's ID: the peer URLs, no cluster name, the second of the request
        # (the same URLs added twice within a second make the same ID).
        mid = new_member_id(urls)
        if not learner and self.ctx.cfg.strict_reconfig_check:
            # After the add, the started voters must still form a quorum (etcd lets a
            # one-member cluster add a second voter: restoring a cluster from one).
            started, after = self._started_voters(), self._voters() + 1
            if started < after // 2 + 1 and not (started == 1 and after == 2):
                raise etcd_error(EtcdError.NOT_ENOUGH_STARTED)
            # etcd's isConnectedFullySince: every other voter reachable for a while.
            if not all(self._connected_since(v, time.monotonic() - HEALTH_INTERVAL)
                       for v in self._voter_ids()):
                raise etcd_error(EtcdError.UNHEALTHY)
        # Then etcd's ValidateConfigurationChange, in its order.
        if mid in self.ms.removed:
            raise etcd_error(EtcdError.MEMBER_NOT_FOUND)
        if mid in self.ms.members:
            raise etcd_error(EtcdError.MEMBER_EXIST)
        for m in self.ms.members.values():
            if set(m.peer_urls) & set(urls):
                raise etcd_error(EtcdError.PEER_URL_EXIST)
        if learner:
            if sum(1 for m in self.ms.members.values() if m.is_learner) >= MAX_LEARNERS:
                raise etcd_error(EtcdError.TOO_MANY_LEARNERS)
        m = Member(mid, "", list(urls), [], learner)
        kind = ConfChangeType.AddLearnerNode if learner else ConfChangeType.AddNode
        return m, self.ctx.propose_conf_change(ConfChange.single(kind, mid, m.context()))

    def remove(self, mid: int):
        """The quorum check first (etcd's mayRemoveMember), then an unknown ID."""
        m = self.ms.members.get(mid)
        if (m is None or not m.is_learner) and self.ctx.cfg.strict_reconfig_check:
            started_after = self._started_voters() - (1 if m is not None and m.name and
                                                      not m.is_learner else 0)
            voters_after = self._voters() - (1 if m is not None else 0)
            if started_after < voters_after // 2 + 1:
                raise etcd_error(EtcdError.NOT_ENOUGH_STARTED)
            # A member out of touch is not part of the active quorum: removing it is
            # safe. Otherwise the voters in touch (this one too) less the removed one
            # must still be a quorum of the voters now (etcd's numConnectedSince).
            if m is not None and (mid == self.ctx.member_id
                                  or self.ctx.peer_active_since(mid) is not None):
                voters = self._voter_ids()
                since = time.monotonic() - HEALTH_INTERVAL
                active = sum(1 for v in voters if self._connected_since(v, since))
                if active - 1 < 1 + (len(voters) - 1) // 2:
                    raise etcd_error(EtcdError.UNHEALTHY)
        if m is None:
            raise etcd_error(EtcdError.MEMBER_NOT_FOUND)
        return self.ctx.propose_conf_change(ConfChange.single(ConfChangeType.RemoveNode, mid))

    def update(self, mid: int, urls: list):
        m = self.ms.members.get(mid)
        if m is None:
            raise etcd_error(EtcdError.MEMBER_NOT_FOUND)
        for other in self.ms.members.values():
            if other.id != mid and set(other.peer_urls) & set(urls):
                raise etcd_error(EtcdError.PEER_URL_EXIST)
        updated = Member(m.id, m.name, list(urls), m.client_urls, m.is_learner)
        return self.ctx.propose_conf_change(
            ConfChange.single(ConfChangeType.UpdateNode, mid, updated.context()))

    def member_promote(self, req: bytes):
        r = rpc_pb2.MemberPromoteRequest.FromString(req)
        m = self.ms.members.get(r.ID)
        if m is None:
            raise etcd_error(EtcdError.MEMBER_NOT_FOUND)
        if not m.is_learner:
            raise etcd_error(EtcdError.MEMBER_NOT_LEARNER)
        raft = self.ctx.raft
        if raft.is_leader:
            pr = raft.progress()
            lead_match = pr[raft.id].match if raft.id in pr else raft.committed
            learner = pr.get(r.ID)
            if learner is None or learner.match < lead_match * 0.9:
                raise etcd_error(EtcdError.LEARNER_NOT_READY)
        promoted = Member(m.id, m.name, m.peer_urls, m.client_urls, False)
        cc = ConfChange.single(ConfChangeType.AddNode, r.ID, promoted.context())
        return self._then(self.ctx.propose_conf_change(cc), lambda: self._promoted(
            rpc_pb2.MemberPromoteResponse(members=self._members_pb())))

    def _promoted(self, resp):
        if self.ctx.raft.is_leader:
            self.ctx.metrics.learner_promote_successes += 1
        return self._respond(resp)

    def member_list(self, req: bytes):
        return self._respond(rpc_pb2.MemberListResponse(members=self._members_pb()))

    def move_leader(self, req: bytes):
        r = rpc_pb2.MoveLeaderRequest.FromString(req)
        ctx = self.ctx
        raft = ctx.raft
        if not raft.is_leader:
            raise etcd_error(EtcdError.NOT_LEADER)
        target = self.ms.members.get(r.targetID)
        if target is None or target.is_learner:
            raise etcd_error(EtcdError.BAD_LEADER_TRANSFEREE)
        hdr = wire.header(ctx.cluster_id, ctx.member_id, ctx.store.current_rev, raft.term)
        if r.targetID == ctx.member_id:
            return wire.with_header(hdr, b"")
        raft.transfer_leader(r.targetID)

        async def wait():
            deadline = ctx.loop.time() + ctx.request_timeout
            while raft.lead != r.targetID:
                if ctx.loop.time() > deadline:
                    raise etcd_error(EtcdError.TIMEOUT)
                await asyncio.sleep(0.01)
            return wire.with_header(wire.header(ctx.cluster_id, ctx.member_id,
                                                ctx.store.current_rev, raft.term), b"")
        return asyncio.ensure_future(wait())


def register(ctx, reg) -> ClusterService:
    s = ClusterService(ctx)
    s.register(reg)
    return s
