"""A leader that is asked to stop hands its leadership to a follower first, as etcd's
EtcdServer.Stop does (TransferLeadership): a rolling restart then costs the cluster no
election timeout. The transferee is the most up-to-date recently active voter (etcd
takes the longest-connected one; both mean a follower that can take over at once).
Bounded by the request timeout; a transfer that does not finish is logged and the
member stops anyway."""
from __future__ import annotations

import asyncio
import logging
import time

from kvcore import logs

log = logging.getLogger("kvcore.server")


def transferee(raft, connected=None) -> int:
    """The voter to hand leadership to, or 0 if none can take it. ``connected``: the
    peers the transport has a live connection to (etcd's longestConnected looks only
    at those): Raft's recent_active still counts a follower stopped a moment ago, and
    a transfer to it would hold the stop for the whole request timeout."""
    best, best_match = 0, -1
    for mid, pr in raft.progress().items():
        if mid == raft.id or pr.is_learner or not pr.recent_active:
            continue
        if connected is not None and mid not in connected:
            continue
        if pr.match > best_match:
            best, best_match = mid, pr.match
    return best


async def transfer_on_stop(core, timeout: float) -> None:
    raft = core.raft
    me = f"{core.member_id:x}"
    if not raft.is_leader:
        log.info("skipped leadership transfer; local server is not leader",
                 extra=logs.fields(local_member_id=me, current_leader_member_id=f"{raft.lead:x}"))
        return
    voters = [v for v in raft.conf_state.voters]
    if len(voters) < 2:
        log.info("skipped leadership transfer for single voting member cluster",
                 extra=logs.fields(local_member_id=me, current_leader_member_id=me))
        return
    target = transferee(raft, core.transport.active_peers())
    if not target:
        log.warning("leadership transfer failed", extra=logs.fields(
            local_member_id=me, error="etcdserver: unhealthy cluster"))
        return
    log.info("leadership transfer starting", extra=logs.fields(
        local_member_id=me, current_leader_member_id=me, transferee_member_id=f"{target:x}"))
    start = time.monotonic()
    raft.transfer_leader(target)
    deadline = start + timeout
    while raft.lead in (0, core.member_id) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if raft.lead in (0, core.member_id):
        log.warning("leadership transfer failed", extra=logs.fields(
            local_member_id=me, error="etcdserver: request timed out, leader transfer took too long"))
        return
    log.info("leadership transfer finished", extra=logs.fields(
        local_member_id=me, old_leader_member_id=me, new_leader_member_id=f"{raft.lead:x}",
        took=logs.go_duration(time.monotonic() - start)))
