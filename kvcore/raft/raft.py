"""The Raft state machine (Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm", and Ongaro's thesis for pre-vote, check-quorum, ReadIndex, leader transfer).

Behaviour is switched by role: ``become_*`` sets ``self.step_fn`` to one of
``step_leader`` / ``step_candidate`` / ``step_follower`` (step.py) and ``self.tick`` to
``tick_heartbeat`` or ``tick_election``.  Reading one of those functions tells you
everything a node in that role does.

This module is pure: no clock (time is ``tick()``), no randomness except the injected
``random.Random``, no I/O.  Messages to send accumulate in ``self.msgs``; the RawNode
hands them out in a Ready.
"""
from __future__ import annotations

import random

from . import confchange
from .errors import ErrSnapshotTemporarilyUnavailable, ProposalDropped, StorageError
from .log import RaftLog
from .progress import Progress, StateProbe, StateReplicate
from .quorum import VoteWon
from .read_only import ReadOnly, ReadState
from .tracker import ProgressTracker
from .types import (CAMPAIGN_ELECTION, CAMPAIGN_PRE_ELECTION, CAMPAIGN_TRANSFER, NONE,
                    ConfChange, ConfState, Entry, EntryConfChange, HardState, Message,
                    MsgApp, MsgAppResp, MsgBeat, MsgCheckQuorum, MsgHeartbeat,
                    MsgHeartbeatResp, MsgHup, MsgPreVote, MsgPreVoteResp, MsgProp,
                    MsgReadIndex, MsgReadIndexResp, MsgSnap, MsgTimeoutNow, MsgVote,
                    MsgVoteResp, StateCandidate, StateFollower, StateLeader,
                    StatePreCandidate, vote_resp_msg_type)
from .step import step_candidate, step_follower, step_leader
from .util import NO_LIMIT


_VOTE_TYPES = (MsgVote, MsgPreVote, MsgVoteResp, MsgPreVoteResp)


class Config:
    """Parameters of one Raft node.

    election_tick must exceed heartbeat_tick (etcd uses 10 and 1).  ``rng`` is the only
    source of randomness (the randomized election timeout); pass a seeded
    ``random.Random`` for reproducible runs.  ``applied`` is the last index the
    application applied before a restart (entries up to it are not returned again).
    """

    def __init__(self, id: int, storage, election_tick: int = 10, heartbeat_tick: int = 1,
                 applied: int = 0, max_size_per_msg: int = 1 << 20,
                 max_committed_size_per_ready: int = NO_LIMIT,
                 max_uncommitted_entries_size: int = NO_LIMIT,
                 max_inflight_msgs: int = 256, check_quorum: bool = False,
                 pre_vote: bool = False, disable_proposal_forwarding: bool = False,
                 step_down_on_removal: bool = True, ack_own_after_persist: bool = False,
                 rng: random.Random | None = None) -> None:
        self.id = id
        self.storage = storage
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.applied = applied
        self.max_size_per_msg = max_size_per_msg
        self.max_committed_size_per_ready = max_committed_size_per_ready
        self.max_uncommitted_entries_size = max_uncommitted_entries_size
        self.max_inflight_msgs = max_inflight_msgs
        self.check_quorum = check_quorum
        self.pre_vote = pre_vote
        self.disable_proposal_forwarding = disable_proposal_forwarding
        self.step_down_on_removal = step_down_on_removal
        # A leader with other voters counts its own entries only once the driver
        # reports them persisted (own_persisted), so it may send them before its own
        # fsync (Raft thesis 10.2.1; etcd's raft 3.6 self-acknowledgement).
        self.ack_own_after_persist = ack_own_after_persist
        self.rng = rng

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use 0 as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.storage is None:
            raise ValueError("storage cannot be nil")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")


def num_of_pending_conf(ents) -> int:
    return sum(1 for e in ents if e.type == EntryConfChange)


class Raft:
    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.rng = c.rng if c.rng is not None else random.Random(c.id)
        self.raft_log = RaftLog(c.storage, c.max_committed_size_per_ready)
        hs, cs = c.storage.initial_state()
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size
        self.trk = ProgressTracker(c.max_inflight_msgs)
        self.election_timeout = c.election_tick
        self.heartbeat_timeout = c.heartbeat_tick
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.step_down_on_removal = c.step_down_on_removal
        self.ack_own_after_persist = c.ack_own_after_persist
        self.own_unwritten = 0   # last entry counted at append and not yet written

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateFollower
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self.tick = self.tick_election
        self.step_fn = step_follower

        cfg, prs = confchange.restore(
            confchange.Changer(self.trk, self.raft_log.last_index()), cs)
        cs2 = self.switch_to_config(cfg, prs)
        if cs2 != cs:
            raise AssertionError(f"restored {cs2} != {cs}")
        if not hs.is_empty():
            self.load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    # -- state accessors ---------------------------------------------------------------

    def has_leader(self) -> bool:
        return self.lead != NONE

    def soft_state(self) -> tuple[int, int]:
        return (self.lead, self.state)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.raft_log.committed)

    def load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(f"{self.id} state.commit {hs.commit} is out of range "
                                 f"[{self.raft_log.committed}, "
                                 f"{self.raft_log.last_index()}]")
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # -- sending -----------------------------------------------------------------------

    def send(self, m: Message) -> None:
        if m.frm == NONE:
            m.frm = self.id
        t = m.type
        if t in _VOTE_TYPES:
            if m.term == 0:
                # Vote messages carry the term they are about (for pre-votes a future
                # term), so it is always set by the caller.
                raise AssertionError(f"term should be set when sending {t}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {t} "
                                     f"(was {m.term})")
            # Proposals and read requests are forwarded to the leader as if local; they
            # carry no term.
            if t != MsgProp and t != MsgReadIndex:
                m.term = self.term
        self.msgs.append(m)

    def send_append(self, to: int) -> None:
        self.maybe_send_append(to, True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send an append (or a snapshot when the needed entries are compacted) to
        ``to``.  Returns whether a message was sent."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        try:
            term = log.term(pr.next - 1)
            ents = log.entries(pr.next, self.max_msg_size)
        except StorageError:
            # The entries the follower needs are compacted: send a snapshot instead.
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        m = Message(MsgApp, to, index=pr.next - 1, log_term=term, entries=ents,
                    commit=log.committed)
        if ents:
            if pr.state == StateReplicate:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
            elif pr.state == StateProbe:
                pr.probe_sent = True
        self.send(m)
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snap = self.raft_log.snapshot()
        except ErrSnapshotTemporarilyUnavailable:
            return False
        if snap.is_empty():
            raise AssertionError("need non-empty snapshot")
        pr.become_snapshot(snap.metadata.index)
        self.send(Message(MsgSnap, to, snapshot=snap))
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Attach min(match, committed): the follower may not have the leader's log yet,
        # and must never be told to commit an index it does not have.
        pr = self.trk.progress[to]
        commit = min(pr.match, self.raft_log.committed)
        self.send(Message(MsgHeartbeat, to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for pid in self.trk.ids():
            if pid != self.id:
                self.maybe_send_append(pid, True)

    def bcast_heartbeat(self, ctx: bytes = b"") -> None:
        if not ctx:
            ctx = self.read_only.last_pending_request_ctx()
        for pid in self.trk.ids():
            if pid != self.id:
                self.send_heartbeat(pid, ctx)

    # -- commit / apply ----------------------------------------------------------------

    def maybe_commit(self) -> bool:
        mci = self.trk.committed()
        return self.raft_log.maybe_commit(mci, self.term)

    def applied_to(self, index: int) -> None:
        old = self.raft_log.applied
        new = max(index, old)
        self.raft_log.applied_to(new)
        cfg = self.trk.config
        if cfg.auto_leave and new >= self.pending_conf_index and \
                self.state == StateLeader:
            # Leave the joint configuration automatically.  The empty data decodes to the
            # leave-joint ConfChange and never trips the uncommitted-size limit.
            m = Message(MsgProp, frm=self.id, entries=[Entry(type=EntryConfChange)])
            try:
                self.step(m)
            except ProposalDropped:
                pass

    # -- state transitions -------------------------------------------------------------

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        mi = self.trk.max_inflight
        for pid, pr in self.trk.progress.items():
            pr.match = 0
            pr.next = last + 1
            pr.state = StateProbe
            pr.probe_sent = False
            pr.pending_snapshot = 0
            pr.recent_active = False
            pr.inflights.reset()
            pr.inflights.size = mi
            if pid == self.id:
                pr.match = last
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_read_index_messages = []

    def append_entry(self, es: list) -> bool:
        li = self.raft_log.last_index()
        term = self.term
        for i, e in enumerate(es, 1):
            e.term = term
            e.index = li + i
        if not self.increase_uncommitted_size(es):
            return False
        li = self.raft_log.append(es)
        if self.ack_own_after_persist and not self.sole_voter():
            return True   # counted by own_persisted, after the driver's fsync
        # Otherwise the leader's own entries count toward the quorum right away; the
        # driver then persists them before sending anything (so before any commit is
        # visible).
        if self.ack_own_after_persist:
            self.own_unwritten = max(self.own_unwritten, li)
        self.trk.progress[self.id].maybe_update(li)
        self.maybe_commit()
        return True

    def sole_voter(self) -> bool:
        trk = self.trk
        return trk.is_singleton() and self.id in trk.config.voters.incoming

    def sends_before_persist(self) -> bool:
        """A leader whose appends wait for own_persisted: its messages may leave before
        its own write (nothing it sends counts an unwritten entry of its own)."""
        return (self.ack_own_after_persist and self.state == StateLeader
                and not self.own_unwritten and not self.sole_voter())

    def own_persisted(self, index: int, term: int) -> None:
        """The driver wrote this node's log up to ``index`` (of ``term``): a leader
        counts it toward the quorum now, and tells followers of a new commit."""
        if index >= self.own_unwritten:
            # Entries counted when appended (as a sole voter) are written now: the
            # commit index they made may be sent before a write again.
            self.own_unwritten = 0
        if self.state != StateLeader or not self.raft_log.match_term(index, term):
            return
        pr = self.trk.progress.get(self.id)
        if pr is not None and pr.maybe_update(index) and self.maybe_commit():
            self.release_pending_read_index_messages()
            self.bcast_append()

    def tick_election(self) -> None:
        """Followers and candidates: start an election when the timeout elapses."""
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.step(Message(MsgHup, frm=self.id))

    def tick_heartbeat(self) -> None:
        """Leader: send heartbeats; check the quorum once per election timeout."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MsgCheckQuorum, frm=self.id))
            # A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateLeader and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateLeader:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MsgBeat, frm=self.id))

    def become_follower(self, term: int, lead: int) -> None:
        self.step_fn = step_follower
        self.reset(term)
        self.tick = self.tick_election
        self.lead = lead
        self.state = StateFollower

    def become_candidate(self) -> None:
        if self.state == StateLeader:
            raise AssertionError("invalid transition [leader -> candidate]")
        self.step_fn = step_candidate
        self.reset(self.term + 1)
        self.tick = self.tick_election
        self.vote = self.id
        self.state = StateCandidate

    def become_pre_candidate(self) -> None:
        if self.state == StateLeader:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote (thesis §9.6).
        self.step_fn = step_candidate
        self.trk.reset_votes()
        self.tick = self.tick_election
        self.lead = NONE
        self.state = StatePreCandidate

    def become_leader(self) -> None:
        if self.state == StateFollower:
            raise AssertionError("invalid transition [follower -> leader]")
        self.step_fn = step_leader
        self.reset(self.term)
        self.tick = self.tick_heartbeat
        self.lead = self.id
        self.state = StateLeader
        # The leader's own progress is always in Replicate, and always "recently active"
        # for check-quorum purposes.
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Conservatively treat everything not yet applied as a possible conf change.
        self.pending_conf_index = self.raft_log.last_index()
        # An empty entry of the new term commits everything before it (§5.4.2, §8).
        if not self.append_entry([Entry()]):
            raise AssertionError("empty entry was dropped")

    def promotable(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and \
            self.raft_log.unstable.snapshot is None

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = \
            self.election_timeout + self.rng.randrange(self.election_timeout)

    def hup(self, t: bytes) -> None:
        if self.state == StateLeader:
            return
        if not self.promotable():
            return
        log = self.raft_log
        # Do not campaign with an applied-but-unapplied conf change pending: the new
        # config could change who may be elected.
        if log.committed > log.applied:
            ents = log.slice(log.applied + 1, log.committed + 1)
            if num_of_pending_conf(ents):
                return
        self.campaign(t)

    def campaign(self, t: bytes) -> None:
        if not self.promotable():
            return
        if t == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MsgPreVote
            # Pre-vote for the next term without incrementing ours.
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = MsgVote
            term = self.term
        _, _, res = self.poll(self.id, vote_resp_msg_type(vote_msg), True)
        if res == VoteWon:
            # Single-node cluster: we won by voting for ourselves.
            if t == CAMPAIGN_PRE_ELECTION:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        last = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        ctx = CAMPAIGN_TRANSFER if t == CAMPAIGN_TRANSFER else b""
        for pid in sorted(self.trk.config.voters.ids()):
            if pid == self.id:
                continue
            self.send(Message(vote_msg, pid, term=term, index=last, log_term=last_term,
                              context=ctx))

    def poll(self, pid: int, t: int, granted: bool):
        self.trk.record_vote(pid, granted)
        return self.trk.tally_votes()

    # -- step ---------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message.  Raises ProposalDropped for a proposal that cannot be
        appended or forwarded."""
        # Term rules first (§5.1): stale terms are ignored, newer terms demote us.
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type == MsgVote or m.type == MsgPreVote:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    # We heard from a live leader within the minimum election timeout:
                    # ignore the vote (thesis §4.2.3, disruptive servers).
                    return
            if m.type == MsgPreVote:
                pass  # never change our term in response to a pre-vote
            elif m.type == MsgPreVoteResp and not m.reject:
                # We sent a pre-vote for term+1; the grant comes back at that term.
                pass
            elif m.type in (MsgApp, MsgHeartbeat, MsgSnap):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MsgHeartbeat, MsgApp):
                # A node partitioned away may have bumped its term; tell the old leader
                # about our term so it steps down instead of being ignored forever.
                self.send(Message(MsgAppResp, m.frm))
            elif m.type == MsgPreVote:
                # Reject a pre-vote from the past so the sender learns our term.
                self.send(Message(MsgPreVoteResp, m.frm, term=self.term, reject=True))
            return

        t = m.type
        if t == MsgHup:
            self.hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == MsgVote or t == MsgPreVote:
            # §5.2 one vote per term (repeat votes for the same candidate are fine); a
            # pre-vote for a future term is always eligible.
            can_vote = (self.vote == m.frm
                        or (self.vote == NONE and self.lead == NONE)
                        or (t == MsgPreVote and m.term > self.term))
            # §5.4.1 election restriction: only vote for an up-to-date log.
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                self.send(Message(vote_resp_msg_type(t), m.frm, term=m.term))
                if t == MsgVote:
                    self.election_elapsed = 0
                    self.vote = m.frm
            else:
                self.send(Message(vote_resp_msg_type(t), m.frm, term=self.term,
                                  reject=True))
        else:
            self.step_fn(self, m)

    # -- follower-side handlers --------------------------------------------------------

    def handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            self.send(Message(MsgAppResp, m.frm, index=log.committed))
            return
        lastnewi, ok = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if ok:
            self.send(Message(MsgAppResp, m.frm, index=lastnewi))
            return
        # Reject with a hint (fast back-off): the largest index <= m.index whose term is
        # <= m.log_term, so the leader can skip a whole term of mismatches at once.
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        self.send(Message(MsgAppResp, m.frm, index=m.index, reject=True,
                          reject_hint=hint_index, log_term=hint_term))

    def handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self.send(Message(MsgHeartbeatResp, m.frm, context=m.context))

    def handle_snapshot(self, m: Message) -> None:
        if self.restore(m.snapshot):
            self.send(Message(MsgAppResp, m.frm, index=self.raft_log.last_index()))
        else:
            self.send(Message(MsgAppResp, m.frm, index=self.raft_log.committed))

    def restore(self, s) -> bool:
        """Install a snapshot from the leader; returns False if it is not needed."""
        md = s.metadata
        log = self.raft_log
        if md.index <= log.committed:
            return False
        if self.state != StateFollower:
            # Defensive: only a follower may install a snapshot.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = md.conf_state
        if self.id not in cs.voters and self.id not in cs.learners and \
                self.id not in cs.voters_outgoing:
            return False
        if log.match_term(md.index, md.term):
            # We already have the entry: fast-forward the commit index instead.
            log.commit_to(md.index)
            return False
        log.restore(s)
        self.trk = ProgressTracker(self.trk.max_inflight)
        cfg, prs = confchange.restore(confchange.Changer(self.trk, log.last_index()), cs)
        cs2 = self.switch_to_config(cfg, prs)
        if cs2 != cs:
            raise AssertionError(f"restored {cs2} != {cs}")
        pr = self.trk.progress[self.id]
        pr.maybe_update(pr.next - 1)
        return True

    # -- membership --------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        changer = confchange.Changer(self.trk, self.raft_log.last_index())
        if cc.leave_joint():
            cfg, prs = changer.leave_joint()
        else:
            auto_leave, joint = cc.enter_joint()
            if joint:
                cfg, prs = changer.enter_joint(auto_leave, cc.changes)
            else:
                cfg, prs = changer.simple(cc.changes)
        return self.switch_to_config(cfg, prs)

    def switch_to_config(self, cfg, prs) -> ConfState:
        self.trk.set(cfg, prs)
        cs = self.trk.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateLeader:
            # Removed or demoted leader: stop leading; the others elect a new one.
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != StateLeader or not cs.voters:
            return cs
        if self.maybe_commit():
            # The quorum shrank and more entries are committed now.
            self.bcast_append()
        else:
            for pid in self.trk.ids():
                if pid != self.id:
                    self.maybe_send_append(pid, False)
        if self.lead_transferee != NONE and \
                self.lead_transferee not in self.trk.config.voters.ids():
            self.abort_leader_transfer()
        return cs

    # -- leader helpers ----------------------------------------------------------------

    def send_timeout_now(self, to: int) -> None:
        self.send(Message(MsgTimeoutNow, to))

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.zero_term_on_compacted(self.raft_log.committed) == self.term

    def response_to_read_index_req(self, req: Message, read_index: int):
        if req.frm == NONE or req.frm == self.id:
            self.read_states.append(ReadState(read_index, req.entries[0].data))
            return None
        return Message(MsgReadIndexResp, req.frm, index=read_index, entries=req.entries)

    def send_read_index_response(self, m: Message) -> None:
        ctx = m.entries[0].data
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, ctx)
        self.bcast_heartbeat(ctx)

    def release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        if not self.committed_entry_in_current_term():
            return
        msgs = self.pending_read_index_messages
        self.pending_read_index_messages = []
        for m in msgs:
            self.send_read_index_response(m)

    def increase_uncommitted_size(self, ents) -> bool:
        if self.max_uncommitted_size >= NO_LIMIT:
            return True
        s = 0
        for e in ents:
            s += len(e.data)
        if self.uncommitted_size > 0 and s > 0 and \
                self.uncommitted_size + s > self.max_uncommitted_size:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, ents) -> None:
        if self.uncommitted_size == 0:
            return
        s = 0
        for e in ents:
            s += len(e.data)
        self.uncommitted_size = max(0, self.uncommitted_size - s)
