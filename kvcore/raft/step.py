"""What a node does with a message in each role: ``step_leader``, ``step_candidate``,
``step_follower``. ``Raft.step`` handles what every role does alike (terms, votes) and
hands the rest to ``Raft.step_fn``, which ``become_*`` sets to one of these; reading one
of them tells you everything a node in that role does. Pure, like raft.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .codec import decode_conf_change
from .errors import ProposalDropped
from .progress import Progress, StateProbe, StateReplicate, StateSnapshot
from .quorum import VoteLost, VoteWon
from .read_only import ReadState
from .types import (CAMPAIGN_ELECTION, CAMPAIGN_TRANSFER, NONE, Entry, EntryConfChange,
                    Message, MsgApp, MsgAppResp, MsgBeat, MsgCheckQuorum, MsgHeartbeat,
                    MsgHeartbeatResp, MsgPreVoteResp, MsgProp, MsgReadIndex,
                    MsgReadIndexResp, MsgSnap, MsgSnapStatus, MsgTimeoutNow,
                    MsgTransferLeader, MsgUnreachable, MsgVoteResp, StatePreCandidate)

if TYPE_CHECKING:
    from .raft import Raft


def step_leader(r: Raft, m: Message) -> None:
    t = m.type
    # Messages that need no progress of the sender.
    if t == MsgBeat:
        r.bcast_heartbeat()
        return
    if t == MsgCheckQuorum:
        if not r.trk.quorum_active():
            # We did not hear from a quorum within an election timeout: we may be
            # partitioned, so stop serving as leader (thesis §6.2).
            r.become_follower(r.term, NONE)
        for pid, pr in r.trk.progress.items():
            if pid != r.id:
                pr.recent_active = False
        return
    if t == MsgProp:
        _leader_propose(r, m)
        return
    if t == MsgReadIndex:
        if r.trk.is_singleton():
            # A one-voter cluster is its own quorum: answer at once.
            resp = r.response_to_read_index_req(m, r.raft_log.committed)
            if resp is not None:
                r.send(resp)
            return
        if not r.committed_entry_in_current_term():
            # Until an entry of our term commits we do not know the true commit index
            # (§8); postpone the read.
            r.pending_read_index_messages.append(m)
            return
        r.send_read_index_response(m)
        return

    pr = r.trk.progress.get(m.frm)
    if pr is None:
        return
    if t == MsgAppResp:
        _leader_app_resp(r, m, pr)
    elif t == MsgHeartbeatResp:
        pr.recent_active = True
        pr.probe_sent = False
        # Free one slot so a full window does not stall a follower forever.
        if pr.state == StateReplicate and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < r.raft_log.last_index():
            r.send_append(m.frm)
        if not m.context:
            return
        acks = r.read_only.recv_ack(m.frm, m.context)
        if acks is None:
            return
        if r.trk.config.voters.vote_result(dict.fromkeys(acks, True)) != VoteWon:
            return
        for rs in r.read_only.advance(m.context):
            resp = r.response_to_read_index_req(rs.req, rs.index)
            if resp is not None:
                r.send(resp)
    elif t == MsgSnapStatus:
        if pr.state != StateSnapshot:
            return
        if m.reject:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for an append response (or heartbeat response) before probing again.
        pr.probe_sent = True
    elif t == MsgUnreachable:
        # The transport could not deliver: stop streaming optimistically.
        if pr.state == StateReplicate:
            pr.become_probe()
    elif t == MsgTransferLeader:
        if pr.is_learner:
            return
        transferee = m.frm
        last = r.lead_transferee
        if last != NONE:
            if last == transferee:
                return
            r.abort_leader_transfer()
        if transferee == r.id:
            return
        # The transfer must finish within one election timeout.
        r.election_elapsed = 0
        r.lead_transferee = transferee
        if pr.match == r.raft_log.last_index():
            r.send_timeout_now(transferee)
        else:
            r.send_append(transferee)


def _leader_propose(r: Raft, m: Message) -> None:
    ents = m.entries
    if not ents:
        raise AssertionError("stepped empty MsgProp")
    if r.id not in r.trk.progress:
        # We were removed from the configuration while leader.
        raise ProposalDropped("leader removed from the configuration")
    if r.lead_transferee != NONE:
        raise ProposalDropped("leadership transfer in progress")
    log = r.raft_log
    for i, e in enumerate(ents):
        if e.type != EntryConfChange:
            continue
        cc = decode_conf_change(e.data)
        already_pending = r.pending_conf_index > log.applied
        already_joint = r.trk.config.voters.is_joint()
        wants_leave = cc.leave_joint()
        refused = ""
        if already_pending:
            refused = "possible unapplied conf change"
        elif already_joint and not wants_leave:
            refused = "must transition out of joint config first"
        elif not already_joint and wants_leave:
            refused = "not in joint state; refusing empty conf change"
        if refused:
            # Keep the slot (callers count on positions) but make it a no-op.
            ents = list(ents) if not isinstance(ents, list) else ents
            ents[i] = Entry()
        else:
            r.pending_conf_index = log.last_index() + i + 1
    m.entries = ents
    if not r.append_entry(ents):
        raise ProposalDropped("uncommitted size limit reached")
    r.bcast_append()


def _leader_app_resp(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            # The follower told us the term at its hint index: skip all our entries with
            # a larger term in one step (thesis §5.3 optimisation, both directions).
            next_probe, _ = r.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state == StateReplicate:
                pr.become_probe()
            r.send_append(m.frm)
        return
    old_paused = pr.is_paused()
    if not pr.maybe_update(m.index):
        return
    if pr.state == StateProbe:
        pr.become_replicate()
    elif pr.state == StateSnapshot and pr.match >= pr.pending_snapshot:
        # The snapshot was applied; resume normal replication.
        pr.become_probe()
        pr.become_replicate()
    elif pr.state == StateReplicate:
        pr.inflights.free_le(m.index)

    if r.maybe_commit():
        r.release_pending_read_index_messages()
        r.bcast_append()
    elif old_paused:
        # The follower was paused (window full or probing); it is free now.
        r.send_append(m.frm)
    # Keep the pipe full while there are entries and window space.
    while r.maybe_send_append(m.frm, False):
        pass
    if m.frm == r.lead_transferee and pr.match == r.raft_log.last_index():
        r.send_timeout_now(m.frm)


def step_candidate(r: Raft, m: Message) -> None:
    """Candidates and pre-candidates.  Only responses of our own kind count: a
    pre-candidate ignores stray MsgVoteResp and vice versa."""
    my_resp = MsgPreVoteResp if r.state == StatePreCandidate else MsgVoteResp
    t = m.type
    if t == MsgProp:
        raise ProposalDropped("no leader (election in progress)")
    if t == MsgApp:
        r.become_follower(m.term, m.frm)  # always m.term == r.term
        r.handle_append_entries(m)
    elif t == MsgHeartbeat:
        r.become_follower(m.term, m.frm)
        r.handle_heartbeat(m)
    elif t == MsgSnap:
        r.become_follower(m.term, m.frm)
        r.handle_snapshot(m)
    elif t == my_resp:
        _, _, res = r.poll(m.frm, t, not m.reject)
        if res == VoteWon:
            if r.state == StatePreCandidate:
                r.campaign(CAMPAIGN_ELECTION)
            else:
                r.become_leader()
                r.bcast_append()
        elif res == VoteLost:
            # MsgPreVoteResp carries a future term; stay in ours.
            r.become_follower(r.term, NONE)
    elif t == MsgTimeoutNow:
        pass  # ignored while campaigning


def step_follower(r: Raft, m: Message) -> None:
    t = m.type
    if t == MsgApp:
        r.election_elapsed = 0
        r.lead = m.frm
        r.handle_append_entries(m)
    elif t == MsgHeartbeat:
        r.election_elapsed = 0
        r.lead = m.frm
        r.handle_heartbeat(m)
    elif t == MsgProp:
        if r.lead == NONE:
            raise ProposalDropped("no leader")
        if r.disable_proposal_forwarding:
            raise ProposalDropped("proposal forwarding disabled")
        m.to = r.lead
        r.send(m)
    elif t == MsgSnap:
        r.election_elapsed = 0
        r.lead = m.frm
        r.handle_snapshot(m)
    elif t == MsgTransferLeader:
        if r.lead == NONE:
            return
        m.to = r.lead
        r.send(m)
    elif t == MsgTimeoutNow:
        # The leader asked us to campaign now (leader transfer), skipping pre-vote and
        # the lease check: the old leader is stepping aside.
        r.hup(CAMPAIGN_TRANSFER)
    elif t == MsgReadIndex:
        if r.lead == NONE:
            return  # dropped; the client retries
        m.to = r.lead
        r.send(m)
    elif t == MsgReadIndexResp:
        if len(m.entries) != 1:
            return
        r.read_states.append(ReadState(m.index, m.entries[0].data))
