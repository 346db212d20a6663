"""The Raft driver: owns the RawNode, its storage, the WAL and the snapshot files,
and runs the Ready loop (persist -> send -> apply -> advance) on the event loop.

Persist before send: a Ready's entries and hard state reach the WAL (one write, one
fdatasync, on the I/O thread) before its messages leave, and committed entries are
applied only once persisted. Between ready() and advance() the node keeps stepping
peer messages and taking proposals, so the next batch gathers while the disk works.

The state machine is the ``apply`` callback given by the core; the transport is any
object with ``send(messages)``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
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
                               EntryNormal, HardState, Snapshot, SnapshotMetadata, StateLeader)
from kvcore.storage import snap as snapfiles
from kvcore.storage.codec import walwriter
from kvcore.storage.wal import WAL, HardState as WalHardState, WalContents

log = logging.getLogger("kvcore.raft")

# Entries kept in memory behind a snapshot so a slightly slow follower catches up
# from the log instead of needing a whole snapshot (etcd's SnapshotCatchUpEntries).
CATCH_UP_ENTRIES = 5000
READ_RETRY = 0.5   # seconds before an unanswered ReadIndex is asked again


def bootstrap_entries(members: list) -> list:
    """etcd's raft Bootstrap: one AddNode conf change per initial member at term 1,
    in member-id order, with the member's JSON as context (identical on every member)."""
    ents = []
    for i, m in enumerate(sorted(members, key=lambda m: m.id)):
        cc = ConfChange.single(ConfChangeType.AddNode, m.id, m.context())
        ents.append(Entry(1, i + 1, EntryConfChange, rcodec.encode_conf_change(cc)))
    return ents


class RaftDriver:
    def __init__(self, node_id: int, wal: WAL, snap_dir: str, *, election_tick: int,
                 heartbeat_ms: int, apply: Callable, on_leader_change: Callable,
                 transport=None, pre_vote: bool = True, check_quorum: bool = True):
        self.id = node_id
        self.wal = wal
        self.snap_dir = snap_dir
        self.election_tick = election_tick
        self.heartbeat_s = heartbeat_ms / 1000.0
        self._apply = apply
        self._on_leader_change = on_leader_change
        self.transport = transport
        self.pre_vote = pre_vote
        self.max_snapshots = 5   # --max-snapshots / --max-wals (0 = unlimited)
        self.max_wals = 5
        self.check_quorum = check_quorum
        self.storage = MemoryStorage()
        self.node: Optional[RawNode] = None
        self.lead = 0
        self.is_leader = False
        self.term = 0
        self.committed = 0
        self.conf_state = ConfState()
        self.loop = asyncio.get_event_loop()
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wal")
        self._wake = asyncio.Event()
        self._task = None
        self._ticker = None
        self.proposer = None          # set by the core: gathers proposals per loop turn
        self._read_ctx = 0
        self._reads_waiting: list = []           # futures waiting for the next ReadIndex
        self._reads_inflight: dict = {}          # ctx -> [futures]
        self._read_sent: dict = {}               # ctx -> when it was (last) asked
        self._reads_applied: list = []           # (index, [futures]) waiting for apply
        self.applied = 0
        self._campaign = False
        self._synced_hs = None   # the last hard state made durable (for _must_sync)
        self._writer = walwriter.WalWriter()
        self.loop.add_reader(self._writer.fileno(), self._writer_done)
        self._writing: Optional[asyncio.Future] = None
        self._writing_hs = None
        self.read_state = None   # kvcore.ipc.readstate.ReadState, set by the core
        self._local_reads = False
        # The Ready loop and snapshot() both append to the WAL: one at a time.
        self._wal_lock = asyncio.Lock()

    # ---- start ----

    def restore(self, contents: WalContents, applied: int, bootstrap: Optional[list]) -> None:
        """Load the WAL (and snapshot) into Raft's storage; bootstrap a new cluster."""
        st = self.storage
        snap_index = contents.snapshot_index
        if snap_index:
            snap = snapfiles.load(self.snap_dir, snap_index, contents.snapshot_term)
            if snap is None:
                raise RuntimeError(f"snapshot file for index {snap_index} is missing")
            st.apply_snapshot(snap)
            self.conf_state = snap.metadata.conf_state
        ents = [Entry(t, i, et, d) for i, t, et, d in contents.entries]
        hs = HardState(contents.state.term, contents.state.vote, contents.state.commit)
        if not ents and not snap_index and hs.is_empty() and bootstrap:
            ents = bootstrap
            hs = HardState(1, 0, len(ents))
            self.wal.save(WalHardState(hs.term, hs.vote, hs.commit),
                          [(e.index, e.term, e.type, e.data) for e in ents])
        st.append(ents)
        st.set_hard_state(hs)
        self._synced_hs = hs
        self.term = hs.term
        self.committed = hs.commit
        self.applied = max(applied, snap_index)
        cfg = RaftConfig(self.id, st, election_tick=self.election_tick, heartbeat_tick=1,
                         applied=snap_index, max_size_per_msg=1 << 20,
                         max_inflight_msgs=256, check_quorum=self.check_quorum,
                         pre_vote=self.pre_vote, rng=random.Random())
        self.node = RawNode(cfg)

    def start(self) -> None:
        self._task = self.loop.create_task(self._run())
        self._ticker = self.loop.create_task(self._tick_loop())

    async def stop(self) -> None:
        for t in (self._task, self._ticker):
            if t is not None:
                t.cancel()
        self._io.shutdown(wait=True)
        self.loop.remove_reader(self._writer.fileno())
        self._writer.close()

    # ---- inputs ----

    def wake(self) -> None:
        self._wake.set()

    def step(self, msg) -> None:
        try:
            self.node.step(msg)
        except Exception as e:  # a stale or foreign message: dropped, as Raft does
            log.debug("dropped message from %x: %r", msg.frm, e)
            return
        self._wake.set()

    def report_unreachable(self, pid: int) -> None:
        self.node.report_unreachable(pid)
        self._wake.set()

    def report_snapshot(self, pid: int, failed: bool) -> None:
        self.node.report_snapshot(pid, failed)
        self._wake.set()

    def read_index(self) -> asyncio.Future:
        """A future resolved when a linearizable read may be served (applied >= the
        leader's commit index at the time of the request)."""
        fut = self.loop.create_future()
        self._reads_waiting.append(fut)
        self._wake.set()
        return fut

    def propose_conf_change(self, cc: ConfChange) -> None:
        try:
            self.node.propose_conf_change(cc)
        except ProposalDropped:
            raise etcd_error(EtcdError.NO_LEADER if not self.lead else EtcdError.NOT_CAPABLE)
        self._wake.set()

    def campaign_soon(self) -> None:
        """Campaign once the current Ready is done (a cluster of one needs no
        election timeout)."""
        self._campaign = True
        self._wake.set()

    def transfer_leader(self, target: int) -> None:
        self.node.transfer_leader(target)
        self._wake.set()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self.node.tick()
            self._retry_reads()
            self._wake.set()

    def _retry_reads(self) -> None:
        """A ReadIndex request or its answer can be lost with a peer message: ask
        again (same context) after READ_RETRY, as etcd does."""
        now = self.loop.time()
        for ctx, sent in list(self._read_sent.items()):
            if ctx not in self._reads_inflight:
                del self._read_sent[ctx]
            elif now - sent >= READ_RETRY and self.lead:
                self._read_sent[ctx] = now
                self.node.read_index(ctx)

    # ---- the Ready loop ----

    async def _run(self) -> None:
        node = self.node
        # Committed entries of the last Ready, persisted but not yet applied: they are
        # applied while the next Ready's entries are being written (etcd applies in
        # its own goroutine for the same reason), so the disk and the apply overlap.
        deferred = None
        try:
            while True:
                self._feed()
                if not node.has_ready():
                    if deferred is not None:
                        self._apply_committed(*deferred)
                        deferred = None
                        continue
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                rd = node.ready()
                if rd.soft_state is not None:
                    self._soft_state(rd.soft_state)
                if rd.hard_state is not None:
                    self.term = rd.hard_state.term
                    self.committed = rd.hard_state.commit
                if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
                    async with self._wal_lock:
                        writing = self._start_persist(rd)
                        if deferred is not None:
                            self._apply_committed(*deferred)
                            deferred = None
                        if writing is not None:
                            await writing
                    if rd.snapshot is not None:
                        self.storage.apply_snapshot(rd.snapshot)
                    self.storage.append(rd.entries)
                    if rd.hard_state is not None:
                        self.storage.set_hard_state(rd.hard_state)
                elif deferred is not None:
                    self._apply_committed(*deferred)
                    deferred = None
                if rd.messages and self.transport is not None:
                    self.transport.send(rd.messages)
                for rs in rd.read_states:
                    self._read_sent.pop(rs.request_ctx, None)
                    futs = self._reads_inflight.pop(rs.request_ctx, None)
                    if futs:
                        self._reads_applied.append((rs.index, futs))
                if rd.snapshot is not None or rd.committed_entries:
                    if rd.snapshot is not None or any(e.type != EntryNormal
                                                      for e in rd.committed_entries):
                        # Membership changes and snapshots take effect before Raft
                        # goes on (as etcd waits for their apply).
                        self._apply_committed(rd.snapshot, rd.committed_entries)
                    else:
                        deferred = (None, rd.committed_entries)
                self._release_reads()
                node.advance()
                if self._campaign:
                    # Raft refuses to campaign while conf changes are unapplied, so
                    # this waits until after advance().
                    self._campaign = False
                    node.campaign()
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("fatal error in the raft loop; stopping the member")
            os._exit(1)  # fail-stop: a restart replays the WAL

    def stop_local_reads(self) -> None:
        """A configuration change is being applied: workers ask again until it is."""
        self._local_reads = False
        if self.read_state is not None:
            self.read_state.set_local(False)

    def _update_local_reads(self) -> None:
        """Publish whether workers may serve linearizable reads without a ReadIndex
        (see kvcore/ipc/readstate.py): leader of a one-voter configuration, with an
        entry of its term committed and everything committed applied."""
        if self.read_state is None:
            return
        r = self.node.raft
        ok = (self.is_leader and r.trk.is_singleton() and self.id in r.trk.config.voters.incoming
              and (self._local_reads or (self.applied >= r.raft_log.committed
                                         and r.committed_entry_in_current_term())))
        if ok != self._local_reads:
            self._local_reads = ok
            self.read_state.set_local(ok)

    def _apply_committed(self, snapshot, entries: list) -> None:
        self._apply(snapshot, entries)
        if entries:
            self.applied = entries[-1].index
        if snapshot is not None:
            self.applied = max(self.applied, snapshot.metadata.index)
        self._release_reads()
        self._update_local_reads()

    def _start_persist(self, rd) -> Optional[asyncio.Future]:
        """Write a Ready's snapshot, entries and hard state; -> a future for the
        write still in progress, or None when it is already done.

        Entries go to the native writer thread (no GIL hand-offs); a hard state
        whose only change is the commit index is written right here without a sync;
        snapshots and segment cuts, both rare and file-creating, use the I/O thread."""
        sync = self._must_sync(rd)
        hs = rd.hard_state
        whs = WalHardState(hs.term, hs.vote, hs.commit) if hs is not None else None
        if rd.snapshot is None:
            ents = [(e.index, e.term, e.type, e.data) for e in rd.entries]
            job = self.wal.reserve(whs, ents, allow_cut=False)
            if job is not None:
                fd, blob, offset = job
                if not sync:
                    os.pwrite(fd, blob, offset)
                    return None
                self._writing = self.loop.create_future()
                self._writing_hs = hs
                self._writer.submit(fd, blob, offset, not self.wal.unsafe_no_fsync)
                return self._writing
        return self.loop.run_in_executor(self._io, self._persist, rd, sync)

    def _writer_done(self) -> None:
        err = self._writer.finish()
        if err == -1 or self._writing is None:
            return
        fut, self._writing = self._writing, None
        if err:
            fut.set_exception(OSError(err, f"WAL write failed: {os.strerror(err)}"))
            return
        if self._writing_hs is not None:
            self._synced_hs = self._writing_hs
        fut.set_result(None)

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
                err = etcd_error(EtcdError.NO_LEADER if not self.lead else EtcdError.NOT_CAPABLE)
                for d in datas:
                    fut = self.proposer.waiter(int.from_bytes(d[:8], "little"))
                    if fut is not None and not fut.done():
                        fut.set_exception(err)
        if self._reads_waiting:
            if not self.lead:
                err = etcd_error(EtcdError.NO_LEADER)
                for f in self._reads_waiting:
                    if not f.done():
                        f.set_exception(err)
                self._reads_waiting = []
                return
            self._read_ctx += 1
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
        if not self.is_leader:
            self._update_local_reads()   # at once: before this Ready's write completes
        if old != ss.lead:
            log.info("raft: leader is now %x (was %x), term %d", ss.lead, old, self.node.raft.term)
            # Reads waiting on the old leader's answer will never get one.
            err = etcd_error(EtcdError.LEADER_CHANGED)
            for futs in self._reads_inflight.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(err)
            self._reads_inflight.clear()
            self._read_sent.clear()
            self._on_leader_change(old, ss.lead)

    def _persist(self, rd, sync: bool = True) -> None:
        """On the I/O thread: snapshot file, entries and hard state, one fdatasync
        (none if ``sync`` is false: a commit-index-only change)."""
        if rd.snapshot is not None:
            snapfiles.save(self.snap_dir, rd.snapshot)
            self.wal.save_snapshot(rd.snapshot.metadata.index, rd.snapshot.metadata.term)
        hs = rd.hard_state
        self.wal.save(WalHardState(hs.term, hs.vote, hs.commit) if hs is not None else None,
                      [(e.index, e.term, e.type, e.data) for e in rd.entries], sync=sync)
        if hs is not None and sync:
            self._synced_hs = hs

    # ---- snapshots ----

    async def snapshot(self, index: int, sync_backend: Callable,
                       catch_up: int = CATCH_UP_ENTRIES) -> None:
        """Record a snapshot at applied ``index``: the backend is made durable, the
        snapshot file and WAL record written, old WAL segments released and the
        in-memory log compacted (keeping CATCH_UP_ENTRIES for slow followers)."""
        st = self.storage
        if index <= st.snap.metadata.index:
            return
        snap = st.create_snapshot(index, self.conf_state, b"")

        def work():
            sync_backend()
            snapfiles.save(self.snap_dir, snap)
            self.wal.save_snapshot(index, snap.metadata.term)
            removed = self.wal.release_before(index, keep=self.max_wals)
            snapfiles.release_older(self.snap_dir, index, keep=self.max_snapshots)
            return removed

        async with self._wal_lock:
            removed = await self.loop.run_in_executor(self._io, work)
        compact_to = index - catch_up
        if compact_to > st.first_index():
            st.compact(compact_to)
        log.info("snapshot at index %d (term %d); released %d WAL segment(s)", index,
                 snap.metadata.term, removed)

    # ---- status ----

    @property
    def last_index(self) -> int:
        return self.storage.last_index()

    def progress(self) -> dict:
        return dict(self.node.raft.trk.progress) if self.is_leader else {}
