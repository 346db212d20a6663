"""RawNode: the thread-unsafe, I/O-free API an application drives Raft through.

The caller's contract (one driver loop, e.g. one asyncio task):

1. Feed inputs: ``tick()`` at a fixed interval, ``step(msg)`` for every message received
   from a peer, ``propose(data)`` / ``propose_batch(datas)``, ``read_index(ctx)``,
   ``propose_conf_change(cc)``, ``transfer_leader(id)``, ``campaign()``.
2. When ``has_ready()``, take ``rd = ready()`` and, in this order:
   a. Persist ``rd.snapshot`` (if any), append ``rd.entries`` and save ``rd.hard_state``
      (if not None) to durable storage; fsync if ``rd.must_sync``.  Then make them
      visible to Raft's Storage (MemoryStorage.apply_snapshot / append /
      set_hard_state).  **Persist before send**: the messages may promise (votes, acks,
      commit indexes) what the persisted state backs.
   b. Send ``rd.messages``.  If a MsgSnap cannot be delivered call
      ``report_snapshot(id, failed=True)``; for an unreachable peer
      ``report_unreachable(id)``.
   c. Apply ``rd.snapshot`` and then ``rd.committed_entries`` to the state machine **in
      index order**.  For an ``EntryConfChange`` entry, decode it and call
      ``apply_conf_change(cc)`` (and keep the returned ConfState for snapshots).
   d. Serve ``rd.read_states``: a read with context ``ctx`` may be answered once the
      state machine has applied ``index``.
   e. Call ``advance()``.  ``ready()`` must not be called again before ``advance()``.
3. Log compaction: after applying, the application may call
   ``storage.create_snapshot(i, conf_state, data)`` and ``storage.compact(i)`` for an
   applied index ``i``.

``propose`` raises ``ProposalDropped`` when there is no leader to take the proposal (or
the leader cannot accept it); the caller retries or reports the error to its client.
Messages from the network that fail (stale, unknown peer) are dropped silently by
``step`` except local message types, which raise ``ErrStepLocalMsg``.
"""
from __future__ import annotations

from .codec import encode_conf_change
from .errors import ErrStepLocalMsg, ErrStepPeerNotFound
from .raft import Config, Raft
from .types import (NONE, ConfChange, ConfState, Entry, EntryConfChange, HardState,
                    Message, MsgHup, MsgProp, MsgReadIndex, MsgSnapStatus,
                    MsgTransferLeader, MsgUnreachable, Snapshot, StateLeader, is_local_msg,
                    is_response_msg)


class SoftState:
    """Volatile state useful for logging and routing (not persisted)."""

    __slots__ = ("lead", "raft_state")

    def __init__(self, lead: int, raft_state: int) -> None:
        self.lead = lead
        self.raft_state = raft_state

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SoftState) and self.lead == other.lead
                and self.raft_state == other.raft_state)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SoftState(lead={self.lead}, state={self.raft_state})"


class Ready:
    """Everything the driver must do in one iteration (see the module docstring)."""

    __slots__ = ("soft_state", "hard_state", "read_states", "entries", "snapshot",
                 "committed_entries", "messages", "must_sync")

    def __init__(self) -> None:
        self.soft_state: SoftState | None = None
        self.hard_state: HardState | None = None
        self.read_states: list = []
        self.entries: list = []
        self.snapshot: Snapshot | None = None
        self.committed_entries: list = []
        self.messages: list = []
        self.must_sync = False

    def __repr__(self) -> str:
        return (f"Ready(soft={self.soft_state}, hard={self.hard_state}, "
                f"entries={len(self.entries)}, committed={len(self.committed_entries)}, "
                f"msgs={len(self.messages)}, snap={self.snapshot}, "
                f"reads={self.read_states})")


class RawNode:
    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        r = self.raft
        self.prev_soft_state = SoftState(r.lead, r.state)
        self.prev_hard_state = r.hard_state()
        self._pending: Ready | None = None

    # -- inputs ------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if enabled)."""
        self.raft.step(Message(MsgHup, frm=self.raft.id))

    def propose(self, data: bytes) -> None:
        self.raft.step(Message(MsgProp, frm=self.raft.id, entries=[Entry(data=data)]))

    def propose_batch(self, datas) -> None:
        """Propose many entries in one message (one append, one broadcast)."""
        self.raft.step(Message(MsgProp, frm=self.raft.id,
                               entries=[Entry(0, 0, 0, d) for d in datas]))

    def propose_conf_change(self, cc: ConfChange) -> None:
        self.raft.step(Message(MsgProp, frm=self.raft.id,
                               entries=[Entry(type=EntryConfChange,
                                              data=encode_conf_change(cc))]))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change entry; call in apply order."""
        return self.raft.apply_conf_change(cc)

    def pending_snapshot(self):
        """The snapshot Raft restored from the leader and that is not yet persisted
        (handed out in a Ready and advanced past), or None. Its configuration is
        already Raft's."""
        return self.raft.raft_log.unstable.snapshot

    def step(self, m: Message) -> None:
        """Feed a message received from a peer."""
        if is_local_msg(m.type):
            raise ErrStepLocalMsg(m.type)
        if m.frm in self.raft.trk.progress or not is_response_msg(m.type):
            self.raft.step(m)
            return
        raise ErrStepPeerNotFound(m.frm)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; the answer arrives as a ReadState with this
        ``ctx`` in a later Ready (or never, if leadership changes: retry)."""
        self.raft.step(Message(MsgReadIndex, frm=self.raft.id, entries=[Entry(data=ctx)]))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MsgTransferLeader, frm=transferee))

    def report_unreachable(self, nid: int) -> None:
        self.raft.step(Message(MsgUnreachable, frm=nid))

    def report_snapshot(self, nid: int, failed: bool = False) -> None:
        self.raft.step(Message(MsgSnapStatus, frm=nid, reject=failed))

    # -- output ------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        if r.msgs or r.read_states:
            return True
        log = r.raft_log
        u = log.unstable
        if u.entries or u.snapshot is not None:
            return True
        if r.lead != self.prev_soft_state.lead or r.state != self.prev_soft_state.raft_state:
            return True
        p = self.prev_hard_state
        if r.term != p.term or r.vote != p.vote or log.committed != p.commit:
            return True
        return log.has_next_ents()

    def ready(self) -> Ready:
        if self._pending is not None:
            raise AssertionError("ready() called again before advance()")
        r = self.raft
        log = r.raft_log
        rd = Ready()
        if r.lead != self.prev_soft_state.lead or r.state != self.prev_soft_state.raft_state:
            rd.soft_state = SoftState(r.lead, r.state)
        p = self.prev_hard_state
        if r.term != p.term or r.vote != p.vote or log.committed != p.commit:
            rd.hard_state = HardState(r.term, r.vote, log.committed)
        u = log.unstable
        if u.entries:
            rd.entries = list(u.entries)
        rd.snapshot = u.snapshot
        rd.committed_entries = log.next_ents()
        if r.msgs:
            rd.messages = r.msgs
            r.msgs = []
        if r.read_states:
            rd.read_states = r.read_states
            r.read_states = []
        hs = rd.hard_state
        rd.must_sync = bool(rd.entries) or rd.snapshot is not None or (
            hs is not None and (hs.term != p.term or hs.vote != p.vote))
        if rd.committed_entries and r.max_uncommitted_size:
            r.reduce_uncommitted_size(rd.committed_entries)
        self._pending = rd
        return rd

    def advance(self) -> None:
        rd = self._pending
        if rd is None:
            raise AssertionError("advance() without ready()")
        self._pending = None
        r = self.raft
        if rd.soft_state is not None:
            self.prev_soft_state = rd.soft_state
        if rd.hard_state is not None:
            self.prev_hard_state = rd.hard_state
        log = r.raft_log
        if rd.entries:
            e = rd.entries[-1]
            log.stable_to(e.index, e.term)
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.committed_entries:
            r.applied_to(rd.committed_entries[-1].index)
        elif rd.snapshot is not None:
            r.applied_to(rd.snapshot.metadata.index)

    # -- introspection -----------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def committed(self) -> int:
        """The commit index this node knows (may be ahead of the last Ready's)."""
        return self.raft.raft_log.committed

    def is_sole_voter(self) -> bool:
        """This node is the only voter of its (not joint) configuration."""
        trk = self.raft.trk
        return trk.is_singleton() and self.raft.id in trk.config.voters.incoming

    def committed_entry_in_current_term(self) -> bool:
        """An entry of the current term is committed (a new leader's commit index
        is only known to be up to date from then on)."""
        return self.raft.committed_entry_in_current_term()

    def progress(self) -> dict:
        """A leader's view of each member's replication (id -> Progress), else {}."""
        r = self.raft
        return dict(r.trk.progress) if r.state == StateLeader else {}

    def status(self) -> dict:
        r = self.raft
        st = {"id": r.id, "term": r.term, "vote": r.vote, "commit": r.raft_log.committed,
              "applied": r.raft_log.applied, "lead": r.lead, "state": int(r.state),
              "lead_transferee": r.lead_transferee, "config": repr(r.trk.config)}
        if r.state == 2:
            st["progress"] = {i: repr(pr) for i, pr in r.trk.progress.items()}
        return st


__all__ = ["RawNode", "Ready", "SoftState", "NONE"]
