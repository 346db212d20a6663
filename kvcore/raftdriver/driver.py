"""The Raft driver: owns a RawNode and its in-memory Storage and runs the Ready cycle
(persist -> send -> apply -> advance). It does no I/O itself: everything it touches
outside this process's memory is injected, so the server and the deterministic
simulator (tests/sim/driversim.py) run this same code.

Injected (the server's wiring in brackets, see kvcore/server/core.py):

* ``store``  durable log [kvcore.raftdriver.walstore.WalStore: WAL + snapshot files]
    - ``load() -> (Snapshot | None, [Entry], HardState)``: what survived.
    - ``bootstrap(hard_state, entries)``: write and sync, before anything else.
    - ``save(rd, sync, done, inline, meanwhile) -> bool``: write a Ready's snapshot,
      entries and hard state; fsync iff ``sync``. True: already complete (``done`` is
      not called). False: ``done(err)`` is called later from the loop (err None on
      success). ``inline``: the loop has nothing to overlap with the write, so the
      store may write and sync on the calling thread (a hint; either answer is
      correct); if it does, it calls ``meanwhile()`` (when given) after the write
      and before the sync, and returns True.
      At most one save or snapshot job is in flight; a crash before completion may
      lose it, and loses every write not covered by a completed sync.
    - ``save_snapshot(snap, before, done)``: run ``before()`` (the state machine made
      durable), then persist ``snap`` and release older log; ``done(err, released)``
      later from the loop.
* ``send(messages)``  [PeerTransport.send] hands messages to the network (may drop).
* ``apply(snapshot, entries)``  [Core._apply_ready] the state machine: install the
  snapshot (if not None), then apply the committed entries in index order. A conf
  change entry is applied by calling the driver's ``apply_conf_change(index, cc)``
  (which sets ``conf_state``) from inside ``apply``.
* ``stage(entries) -> bool``  [Core.stage_apply] optional: do the work of applying
  these normal committed entries where nothing can see it (an open LMDB write
  transaction) -> True, or decline -> False. Called inside ``save``'s
  ``meanwhile`` of an inline write, so the work overlaps the device's; the
  ``apply`` of the same entries follows once the write is synced, before the loop
  runs anything else, and makes that work visible.
* ``on_leader_change(old, new)``.
* ``loop``  [the asyncio loop] a scheduler: ``time()``, ``call_soon(fn)``,
  ``call_later(delay, fn) -> handle with cancel()``, ``create_future()``.
* ``on_fatal(exc)``  [log and exit the process] an error inside the cycle.

The contract the driver keeps (what the simulator checks, and each point has a
mutant in tests/sim/mutants.py that the simulator must catch):

1. Persist before send: a Ready's messages leave only once its entries and hard
   state are written -- and fsynced when etcd's MustSync says so (entries, a
   snapshot, a new term or vote; a commit-only change needs no fsync). One
   exception, Raft thesis 10.2.1: a leader with other voters sends its appends while
   it writes its own copy, and Raft counts that copy toward the quorum only once
   written (``own_persisted``), so nothing it sends depends on its unwritten log.
2. Persist before apply: committed entries are applied only once this member has
   persisted them; entries of one Ready are applied while the next Ready is being
   written (the disk and the apply overlap, as in etcd). Snapshots and conf changes
   are applied before Raft goes on. ``hold_applies()`` .. ``release_applies()``
   (a defragmentation copying the state machine) keeps committed entries back, in
   order, while Raft goes on with ticks, heartbeats, appends and commits; a held
   snapshot or conf change stops the cycle until the release. A lone write's entries
   may be staged while they are being written (``stage``, never while applies are
   held): nothing of them is visible until their apply, which comes after the sync.
3. A linearizable read (``read_index()``) resolves only once ``applied`` reaches the
   read index the leader answered; an unanswered request is asked again (same
   context) every ``read_retry`` seconds; a leader change fails the waiting reads.
4. Local reads: ``read_state.set_local(True)`` only while this member is the only
   voter, leads, has committed an entry of its term and applied all it committed.

Inputs (``step``, ``tick``, proposals gathered by ``proposer``, ``read_index``)
only mark the node dirty and schedule one ``_pump`` on the loop, so everything that
arrives in one loop turn lands in one Ready.
"""
from __future__ import annotations

import logging
import os
import random
import time
from typing import Callable, Optional

from kvcore.api.errors import EtcdError, etcd_error
from kvcore.raft import codec as rcodec
from kvcore.raft.errors import ProposalDropped
from kvcore.raft.raft import Config as RaftConfig
from kvcore.raft.rawnode import RawNode
from kvcore.raft.storage import MemoryStorage
from kvcore.raft.types import (ConfChange, ConfChangeType, ConfState, Entry, EntryConfChange,
                               EntryNormal, HardState, MsgApp, StateFollower,
                               StateLeader)

log = logging.getLogger("kvcore.raft")

# Entries kept in memory behind a snapshot so a slightly slow follower catches up
# from the log instead of needing a whole snapshot (etcd's SnapshotCatchUpEntries).
CATCH_UP_ENTRIES = 5000
# ... and at most this much of their data: behind a run of large values (1 MiB puts),
# 5,000 entries would keep gigabytes in memory; a follower further behind gets the
# snapshot instead (docs/decisions.md, "The Raft log bounded in bytes").
# The server snapshots also once this much entry data was applied since the last one
# (KVCORE_SNAPSHOT_BYTES lowers it for tests; the catch-up kept is then a quarter).
SNAPSHOT_BYTES = int(os.environ.get("KVCORE_SNAPSHOT_BYTES", 256 << 20))
CATCH_UP_BYTES = min(64 << 20, SNAPSHOT_BYTES // 4)
READ_RETRY = 0.5   # seconds before an unanswered ReadIndex is asked again


def bootstrap_entries(members: list) -> list:
    """etcd's raft Bootstrap: one AddNode conf change per initial member at term 1,
    in member-id order, with the member's JSON as context (identical on every member)."""
    ents = []
    for i, m in enumerate(sorted(members, key=lambda m: m.id)):
        cc = ConfChange.single(ConfChangeType.AddNode, m.id, m.context())
        ents.append(Entry(1, i + 1, EntryConfChange, rcodec.encode_conf_change(cc)))
    return ents


def _exit_process(exc: BaseException) -> None:
    if isinstance(exc, OSError):    # a failed disk write (a full disk): say which, plainly
        log.error("stopping the member: %s (acknowledged writes are in the WAL; free space "
                  "and restart to replay it)", exc)
    else:
        log.error("fatal error in the raft loop; stopping the member", exc_info=exc)
    os._exit(1)  # fail-stop: a restart replays the WAL


class RaftDriver:
    def __init__(self, node_id: int, store, *, election_tick: int, heartbeat_ms: int,
                 apply: Callable, on_leader_change: Callable, send: Optional[Callable],
                 loop, pre_vote: bool = True, check_quorum: bool = True,
                 on_fatal: Callable = _exit_process, read_retry: float = READ_RETRY,
                 max_size_per_msg: int = 1 << 20, max_inflight_msgs: int = 256,
                 rng: Optional[random.Random] = None, read_ctx_base: Optional[int] = None,
                 stage: Optional[Callable] = None):
        self.id = node_id
        self.store = store
        self.election_tick = election_tick
        self.heartbeat_s = heartbeat_ms / 1000.0
        self._apply = apply
        self._stage = stage
        self._staged = False   # stage() took the committed entries of the Ready in hand
        self._on_leader_change = on_leader_change
        self._send = send
        self.loop = loop
        self._on_fatal = on_fatal
        self.read_retry = read_retry
        self.catch_up_bytes = CATCH_UP_BYTES
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self._raft_opts = (max_size_per_msg, max_inflight_msgs, rng)
        self.storage = MemoryStorage()
        self.node: Optional[RawNode] = None
        self.lead = 0
        self.is_leader = False
        self.term = 0
        self.committed = 0
        self.conf_state = ConfState()
        self._ticker = None
        self._stopped = False
        self._pump_scheduled = False
        # Set by the core: gathers proposals per loop turn (has_pending, take,
        # waiter(rid), len() = proposals still waiting for their apply).
        self.proposer = None
        # ReadIndex contexts must not repeat across restarts: a late answer to the
        # previous incarnation's request would release a new read at an older index
        # (etcd seeds its request ids with the time for the same reason).
        self._read_ctx = (int(time.time() * 1000) << 20 if read_ctx_base is None
                          else read_ctx_base) & 0xFFFFFFFFFFFFFFFF
        self._reads_waiting: list = []           # futures waiting for the next ReadIndex
        self._reads_inflight: dict = {}          # ctx -> [futures]
        self._confirm_only: set = set()          # of those, confirm_leadership()'s
        self._read_sent: dict = {}               # ctx -> when it was (last) asked
        self._reads_applied: list = []           # (index, [futures]) waiting for apply
        self.applied = 0
        self._campaign = False
        self._synced_hs = None   # the last hard state made durable (for _must_sync)
        # The Ready being written (the cycle waits for it), and whether it syncs.
        self._writing = None
        self._writing_sync = False
        # Committed entries of the last Ready, persisted but not yet applied: they are
        # applied while the next Ready's entries are being written (etcd applies in
        # its own goroutine for the same reason), so the disk and the apply overlap.
        self._deferred: Optional[list] = None
        # Held applies, in order (see hold_applies), and whether one of them must be
        # applied before the cycle goes on (a snapshot or a conf change).
        self._held: Optional[list] = None
        self._held_stall = False
        # Snapshot jobs share the store with the Ready cycle: one at a time, a queued
        # job goes before the next Ready write.
        self._snap_jobs: list = []
        self._snapshotting = False
        self.read_state = None   # kvcore.ipc.readstate.ReadState, set by the core
        self._local_reads = False

    # ---- start ----

    def restore(self, applied: int, bootstrap: Optional[list]) -> None:
        """Load what the store kept into Raft's storage; bootstrap a new cluster.
        ``applied`` is the index the state machine already holds durably."""
        st = self.storage
        snap, ents, hs = self.store.load()
        snap_index = 0
        if snap is not None:
            st.apply_snapshot(snap)
            self.conf_state = snap.metadata.conf_state
            snap_index = snap.metadata.index
        if not ents and not snap_index and hs.is_empty() and bootstrap:
            ents = bootstrap
            hs = HardState(1, 0, len(ents))
            self.store.bootstrap(hs, ents)
        st.append(ents)
        st.set_hard_state(hs)
        self._synced_hs = hs
        self.term = hs.term
        self.committed = hs.commit
        self.applied = max(applied, snap_index)
        max_size, max_inflight, rng = self._raft_opts
        cfg = RaftConfig(self.id, st, election_tick=self.election_tick, heartbeat_tick=1,
                         applied=snap_index, max_size_per_msg=max_size,
                         max_inflight_msgs=max_inflight, check_quorum=self.check_quorum,
                         pre_vote=self.pre_vote, ack_own_after_persist=True,
                         rng=rng or random.Random())
        self.node = RawNode(cfg)

    def start(self) -> None:
        self._ticker = self.loop.call_later(self.heartbeat_s, self._on_tick)
        self.wake()

    async def stop(self) -> None:
        self._stopped = True
        if self._ticker is not None:
            self._ticker.cancel()
        self.store.close()

    # ---- inputs ----

    def wake(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._pump)

    def step(self, msg) -> None:
        try:
            self.node.step(msg)
        except Exception as e:  # a stale or foreign message: dropped, as Raft does
            log.debug("dropped message from %x: %r", msg.frm, e)
            return
        self.wake()

    def leader_connection_closed(self, pid: int) -> None:
        """A connection from ``pid`` ended from its side. If ``pid`` is this follower's
        leader, its process is most likely gone (a killed process's sockets close at
        once): the leader's lease ends now, so the election timer's randomized part
        runs from here instead of after a whole silent election timeout. Only the
        timing changes: a live leader's next heartbeat resets it, and with pre-vote and
        check-quorum a member still hearing the leader refuses the pre-vote, so a
        connection that merely dropped never costs a term."""
        r = self.node.raft
        if (r.check_quorum and r.pre_vote and r.lead == pid and r.state == StateFollower
                and r.election_elapsed < r.election_timeout):
            r.election_elapsed = r.election_timeout

    def report_unreachable(self, pid: int) -> None:
        self.node.report_unreachable(pid)
        self.wake()

    def report_snapshot(self, pid: int, failed: bool) -> None:
        self.node.report_snapshot(pid, failed)
        self.wake()

    def read_index(self):
        """A future resolved when a linearizable read may be served (applied >= the
        leader's commit index at the time of the request)."""
        fut = self.loop.create_future()
        self._reads_waiting.append(fut)
        self.wake()
        return fut

    def confirm_leadership(self):
        """A future resolved once a quorum has acknowledged a heartbeat sent after this
        call: a ReadIndex round whose answer does not wait for the apply to catch up
        (it proves leadership, not a readable state)."""
        fut = self.loop.create_future()
        if self.node.raft.lead_transferee:   # handing over: not this leader's to confirm
            fut.set_exception(etcd_error(EtcdError.LEADER_CHANGED))
            return fut
        self._confirm_only.add(fut)
        self._reads_waiting.append(fut)
        self.wake()
        return fut

    def forget_confirm(self, fut) -> None:
        self._confirm_only.discard(fut)

    def apply_conf_change(self, index: int, cc: ConfChange) -> ConfState:
        """Apply the committed conf change entry at ``index`` to Raft's configuration.

        Entries of a Ready are applied after its write completes, and a snapshot from
        the leader can be stepped in the meantime: Raft then already holds the
        snapshot's configuration, which includes every change at or below its index.
        Applying such an entry again would change the restored configuration twice
        (e.g. leave a joint state it is no longer in), so it is skipped."""
        snap = self.node.pending_snapshot()
        if snap is not None and index <= snap.metadata.index:
            log.info("raft: conf change at %d already in the restored snapshot at %d",
                     index, snap.metadata.index)
            self.conf_state = snap.metadata.conf_state
        else:
            self.conf_state = self.node.apply_conf_change(cc)
        return self.conf_state

    def propose_conf_change(self, cc: ConfChange) -> None:
        try:
            self.node.propose_conf_change(cc)
        except ProposalDropped:
            raise self._dropped()
        self.wake()

    def _dropped(self):
        """What a proposal Raft dropped answers: "no leader" if Raft knows none now
        (self.lead follows only at the next Ready: a follower that just became a
        pre-candidate has none already); else etcd's answer, e.g. while the leader
        hands over its leadership."""
        if not self.node.raft.lead:
            return etcd_error(EtcdError.NO_LEADER)
        return etcd_error(EtcdError.PROPOSAL_DROPPED)

    def campaign_soon(self) -> None:
        """Campaign once the current Ready is done (a cluster of one needs no
        election timeout)."""
        self._campaign = True
        self.wake()

    def transfer_leader(self, target: int) -> None:
        self.node.transfer_leader(target)
        self.wake()

    def _on_tick(self) -> None:
        if self._stopped:
            return
        self.tick()
        self._ticker = self.loop.call_later(self.heartbeat_s, self._on_tick)

    def tick(self) -> None:
        self.node.tick()
        self._retry_reads()
        self.wake()

    def _retry_reads(self) -> None:
        """A ReadIndex request or its answer can be lost with a peer message: ask
        again (same context) after ``read_retry``, as etcd does."""
        if not self._read_sent:
            return
        now = self.loop.time()
        for ctx, sent in list(self._read_sent.items()):
            if ctx not in self._reads_inflight:
                del self._read_sent[ctx]
            elif now - sent >= self.read_retry and self.lead:
                self._read_sent[ctx] = now
                self.node.read_index(ctx)

    # ---- the Ready cycle ----

    def _pump(self) -> None:
        """Take Readies until there is none or one is being written (``_persisted``
        resumes the cycle)."""
        self._pump_scheduled = False
        if self._stopped or self._writing is not None or self._snapshotting \
                or self._held_stall:
            return
        node = self.node
        try:
            while not self._snapshotting and not self._held_stall:
                self._feed()
                if not node.has_ready():
                    if self._deferred is not None:
                        self._apply_deferred()
                        continue
                    return
                rd = node.ready()
                if rd.soft_state is not None:
                    self._soft_state(rd.soft_state)
                if rd.hard_state is not None:
                    self.term = rd.hard_state.term
                    self.committed = rd.hard_state.commit
                if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                    sync = self._must_sync(rd)
                    if rd.messages and self._send is not None and \
                            node.raft.sends_before_persist():
                        # A leader's appends go out while it writes its own copy; it
                        # counts that copy once written (own_persisted in _stored).
                        msgs, rd.messages = rd.messages, []
                        self._send(msgs)
                    self._writing = rd
                    self._writing_sync = sync
                    lone = self._lone(rd)
                    done = self.store.save(rd, sync, self._persisted, lone,
                                           self._stage_committed if lone else None)
                    if self._deferred is not None:
                        self._apply_deferred()
                    if not done:
                        return            # _persisted goes on
                    self._writing = None
                    self._stored(rd, sync)
                elif self._deferred is not None:
                    self._apply_deferred()
                self._finish(rd)
                if self._snap_jobs and not self._snapshotting:
                    self._start_snapshot()
        except BaseException as e:
            self._on_fatal(e)

    def _lone(self, rd) -> bool:
        """A sole voter writing one entry, with nothing to apply meanwhile and no
        other proposal in flight, only waits for the write: done inline it saves the
        hand-off to the writer thread and back. Under load the thread lets the loop
        apply and take in the next batch while the fsync runs (docs/decisions.md,
        "A lone put: the WAL written on the loop's thread")."""
        return (self._deferred is None and len(rd.entries) <= 1
                and (self.proposer is None or len(self.proposer) <= 1)
                and self.node.is_sole_voter())

    def _stage_committed(self) -> None:
        """The store's ``meanwhile`` of a lone write: the state machine stages the
        Ready's committed entries while the device writes them (a sole voter
        commits at append). ``_finish`` applies them, after the sync."""
        rd = self._writing
        if (self._stage is not None and self._held is None and rd.committed_entries
                and rd.snapshot is None
                and all(e.type == EntryNormal for e in rd.committed_entries)):
            self._staged = self._stage(rd.committed_entries)

    def _persisted(self, err) -> None:
        """The store finished writing ``self._writing``."""
        rd, self._writing = self._writing, None
        if self._stopped or rd is None:
            return
        try:
            if err is not None:
                raise err
            self._stored(rd, self._writing_sync)
            self._finish(rd)
        except BaseException as e:
            self._on_fatal(e)
            return
        if self._snap_jobs and not self._snapshotting:
            self._start_snapshot()
        else:
            self._pump()

    def _stored(self, rd, sync: bool) -> None:
        """A Ready is durable: make it visible to Raft's storage."""
        hs = rd.hard_state
        if hs is not None and sync:
            self._synced_hs = hs
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        self.storage.append(rd.entries)
        if hs is not None:
            self.storage.set_hard_state(hs)
        if rd.entries and sync:
            last = rd.entries[-1]
            self.node.raft.own_persisted(last.index, last.term)

    def _finish(self, rd) -> None:
        """Send, hand read answers on, apply (or defer), advance."""
        node = self.node
        if rd.messages and self._send is not None:
            msgs = rd.messages
            raft = node.raft
            if raft.state != StateLeader or raft.term != self.term:
                # Appends queued while this node led and sent after it stepped down
                # may carry entries its new log no longer has, never written: drop
                # them (a dropped message is always safe; the new leader resends).
                term = raft.term if raft.state == StateLeader else -1
                msgs = [m for m in msgs if m.type != MsgApp or m.term == term]
            self._send(msgs)
        for rs in rd.read_states:
            self._read_sent.pop(rs.request_ctx, None)
            futs = self._reads_inflight.pop(rs.request_ctx, None)
            if futs and self._confirm_only:
                rest = []
                for f in futs:
                    if f in self._confirm_only:
                        self._confirm_only.discard(f)
                        if not f.done():
                            f.set_result(None)
                    else:
                        rest.append(f)
                futs = rest
            if futs:
                self._reads_applied.append((rs.index, futs))
        if rd.snapshot is not None or rd.committed_entries:
            if self._staged:
                # Staged while written: made visible now, before anything else runs.
                self._staged = False
                self._apply_committed(None, rd.committed_entries)
            elif rd.snapshot is not None or any(e.type != EntryNormal
                                                for e in rd.committed_entries):
                # Membership changes and snapshots take effect before Raft goes on
                # (as etcd waits for their apply).
                self._apply_committed(rd.snapshot, rd.committed_entries)
            else:
                self._deferred = rd.committed_entries
        self._release_reads()
        if self._held_stall:
            return                # release_applies applies it, then advances
        self._advance()

    def _advance(self) -> None:
        node = self.node
        node.advance()
        if self._campaign:
            # Raft refuses to campaign while conf changes are unapplied, so this
            # waits until after advance().
            self._campaign = False
            node.campaign()

    def _apply_deferred(self) -> None:
        entries, self._deferred = self._deferred, None
        self._apply_committed(None, entries)

    def stop_local_reads(self) -> None:
        """A configuration change is being applied: workers ask again until it is."""
        self._local_reads = False
        if self.read_state is not None:
            self.read_state.set_local(False)

    def _update_local_reads(self) -> None:
        """Publish whether workers may serve linearizable reads without a ReadIndex
        (see kvcore/ipc/readstate.py): leader of a one-voter configuration with no
        learner, with an entry of its term committed and everything committed applied.
        A learner applies what the leader commits on its own schedule and answers the
        proposals it forwarded, possibly before the leader (which applies a Ready's
        entries while writing the next) has: a local read on the leader could then miss
        a write already acknowledged, so with a learner reads take the ReadIndex path
        (which waits for the commit index to be applied)."""
        if self.read_state is None:
            return
        node = self.node
        ok = (self.is_leader and node.is_sole_voter() and len(node.raft.trk.progress) == 1
              and (self._local_reads or (self.applied >= node.committed
                                         and node.committed_entry_in_current_term())))
        if ok != self._local_reads:
            self._local_reads = ok
            self.read_state.set_local(ok)

    def hold_applies(self) -> None:
        """Keep committed entries back until ``release_applies``: nothing writes the
        state machine meanwhile (a defragmentation copies it), while Raft goes on, so
        this member keeps its leadership and followers keep their leader. Reads that
        wait for the apply and proposals' answers wait too, as in etcd."""
        if self._held is None:
            self._held = []

    def release_applies(self) -> None:
        """Apply what was held, in order, and go on."""
        held, self._held = self._held or [], None
        stalled, self._held_stall = self._held_stall, False
        try:
            for snapshot, entries in held:
                self._apply_committed(snapshot, entries)
            if stalled:
                self._advance()
        except BaseException as e:
            self._on_fatal(e)
            return
        self.wake()

    def _apply_committed(self, snapshot, entries: list) -> None:
        if self._held is not None:
            self._held.append((snapshot, entries))
            if snapshot is not None or any(e.type != EntryNormal for e in entries):
                self._held_stall = True
            return
        self._apply(snapshot, entries)
        if entries:
            self.applied = entries[-1].index
        if snapshot is not None:
            self.applied = max(self.applied, snapshot.metadata.index)
        self._release_reads()
        self._update_local_reads()

    def _must_sync(self, rd) -> bool:
        """etcd's MustSync: entries, a snapshot, or a new term or vote must reach the
        disk before anything depends on them; a hard state whose only change is the
        commit index need not (a lower commit after a crash is re-learned)."""
        if rd.entries or rd.snapshot is not None:
            return True
        hs, prev = rd.hard_state, self._synced_hs
        return hs is not None and (prev is None or hs.term != prev.term or hs.vote != prev.vote)

    def _feed(self) -> None:
        """Hand Raft what gathered since the last turn: proposals and read requests."""
        node = self.node
        if self.proposer is not None and self.proposer.has_pending():
            datas = self.proposer.take()
            try:
                node.propose_batch(datas)
            except ProposalDropped:
                err = self._dropped()
                for d in datas:
                    fut = self.proposer.waiter(int.from_bytes(d[:8], "little"))
                    if fut is not None and not fut.done():
                        fut.set_exception(err)
        if self._reads_waiting:
            if not self.lead:
                # A client's read waits for a leader (its deadline bounds it), as etcd's
                # read loop asks again until one answers; a leadership confirmation
                # cannot come from a member that knows none.
                err = etcd_error(EtcdError.NO_LEADER)
                keep = []
                for f in self._reads_waiting:
                    if f.done():
                        continue
                    if f in self._confirm_only:
                        f.set_exception(err)
                    else:
                        keep.append(f)
                self._reads_waiting = keep
                self._confirm_only = {f for f in self._confirm_only if not f.done()}
                return
            self._read_ctx = (self._read_ctx + 1) & 0xFFFFFFFFFFFFFFFF
            # The leader tracks pending reads by context: make it unique cluster-wide.
            ctx = self.id.to_bytes(8, "little") + self._read_ctx.to_bytes(8, "little")
            self._reads_inflight[ctx] = self._reads_waiting
            self._read_sent[ctx] = self.loop.time()
            self._reads_waiting = []
            node.read_index(ctx)

    def _release_reads(self) -> None:
        if not self._reads_applied:
            return
        keep = []
        for index, futs in self._reads_applied:
            if index <= self.applied:
                for f in futs:
                    if not f.done():
                        f.set_result(None)
            else:
                keep.append((index, futs))
        self._reads_applied = keep

    def _soft_state(self, ss) -> None:
        old = self.lead
        self.lead = ss.lead
        self.is_leader = ss.raft_state == StateLeader
        if self.read_state is not None:
            self.read_state.set_leader(ss.lead != 0)
        if not self.is_leader:
            self._update_local_reads()   # at once: before this Ready's write completes
        if old != ss.lead:
            log.info("raft: leader is now %x (was %x), term %d", ss.lead, old, self.node.term)
            # Reads waiting on the old leader's answer will never get one.
            err = etcd_error(EtcdError.LEADER_CHANGED)
            for futs in self._reads_inflight.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(err)
            self._reads_inflight.clear()
            self._read_sent.clear()
            self._confirm_only = {f for f in self._confirm_only if not f.done()}
            if ss.lead and self._reads_waiting:
                # Reads that waited for a leader: etcd's read loop answers them
                # "leader changed" once one is elected (clientv3 asks again).
                keep = []
                for f in self._reads_waiting:
                    if f in self._confirm_only:
                        keep.append(f)
                    elif not f.done():
                        f.set_exception(err)
                self._reads_waiting = keep
            self._on_leader_change(old, ss.lead)

    # ---- snapshots ----

    def save_snapshot(self, index: int, data: bytes = b"", before: Optional[Callable] = None,
                      catch_up: int = CATCH_UP_ENTRIES, done: Optional[Callable] = None) -> None:
        """Record a snapshot at applied ``index``: ``before()`` makes the state machine
        durable, the store writes the snapshot and releases older log, then the
        in-memory log is compacted (keeping ``catch_up`` entries for slow followers).
        ``done(err)`` when finished (at once if ``index`` is not newer)."""
        st = self.storage
        if index <= st.snap.metadata.index:
            if done is not None:
                done(None)
            return
        snap = st.create_snapshot(index, self.conf_state, data)
        self._snap_jobs.append((snap, before, catch_up, done))
        if self._writing is None and not self._snapshotting:
            self._start_snapshot()

    def _start_snapshot(self) -> None:
        snap, before, catch_up, done = self._snap_jobs.pop(0)
        self._snapshotting = True

        def saved(err, removed: int = 0) -> None:
            self._snapshotting = False
            if self._stopped:
                return
            if err is None:
                st = self.storage
                compact_to = max(snap.metadata.index - catch_up,
                                 st.index_keeping(snap.metadata.index, self.catch_up_bytes))
                if compact_to >= st.first_index():     # compact(i) drops entries <= i
                    st.compact(compact_to)
                log.info("snapshot at index %d (term %d); released %d WAL segment(s)",
                         snap.metadata.index, snap.metadata.term, removed)
            if done is not None:
                done(err)
            if self._snap_jobs:
                self._start_snapshot()
            else:
                self.wake()

        self.store.save_snapshot(snap, before, saved)

    async def snapshot(self, index: int, sync_backend: Callable,
                       catch_up: int = CATCH_UP_ENTRIES) -> None:
        """``save_snapshot`` for a coroutine (the server's snapshot task)."""
        fut = self.loop.create_future()

        def done(err) -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)
        self.save_snapshot(index, b"", sync_backend, catch_up, done)
        await fut

    # ---- status ----

    @property
    def last_index(self) -> int:
        return self.storage.last_index()

    def progress(self) -> dict:
        return self.node.progress() if self.is_leader else {}
