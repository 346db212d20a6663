"""Seeded simulator of the production Raft driver (kvcore/raftdriver/driver.py).

Every member is a real ``RaftDriver``; instead of the server's WAL, peer transport,
LMDB state machine and asyncio loop it is wired to:

* ``SimDisk``: one member's write records, kept across its crashes. A synced write
  completes after a seeded delay; a crash keeps what a completed fsync covered and,
  sometimes, a prefix of the writes after it (a page cache written back in order).
* the network of tests/sim/cluster.py: drops, duplicates, delays (so reordering),
  partitions, one-way cuts, removed members rejected; every message through the codec.
* a model state machine (cluster.StateMachine) and the server's Proposer.
* ``SimLoop``: virtual time with the loop methods the driver uses (time, call_soon,
  call_later, create_future); one heartbeat is one time unit. A crashed member's
  pending callbacks die with it.

Scenario, chaos and heal phases are cluster.py's (plus single-member clusters, disk
delays and how much a crash loses). Checked, each at the step that would break it:
Raft safety (checkers.py); the driver's contract -- every term and vote a message
carries is fsynced and every entry it carries written (persist before send), an entry
is applied only once written (persist before apply); linearizable reads (a ReadIndex
read reflects every index committed, and a local read every write acknowledged, before
it was issued); no acknowledged write lost across crashes; liveness after heal.

    python -m tests.sim.driversim --seed N [-v]
"""
from __future__ import annotations

import argparse
import heapq
import random
import sys

from kvcore.raft import ConfState, HardState, Snapshot, SnapshotMetadata
from kvcore.raft.codec import decode_conf_change, decode_message, encode_message
from kvcore.raft.errors import ConfChangeError
from kvcore.raft.types import (ConfChangeType, Entry, EntryConfChange, MessageType, MsgApp,
                               MsgPreVote, MsgPreVoteResp, MsgReadIndex, MsgSnap,
                               MsgVoteResp)
from kvcore.raftdriver.driver import RaftDriver

from kvcore.server.entry import Proposer   # the server's (compiled or twin)

from .checkers import SafetyChecker, SafetyViolation
from .cluster import Cluster, LivenessFailure, Scenario, StateMachine

READ_RETRY = 5.0   # heartbeats (the server: 0.5 s at 100 ms)


# ---- time --------------------------------------------------------------------------

class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimFuture:
    """The part of asyncio.Future the driver and its callers use; callbacks run at
    once (the strictest timing for a read: the state is read when it resolves)."""

    __slots__ = ("_state", "_value", "_cbs")

    def __init__(self) -> None:
        self._state = 0          # 0 pending, 1 result, 2 exception
        self._value = None
        self._cbs: list = []

    def done(self) -> bool:
        return self._state != 0

    def _settle(self, state: int, value) -> None:
        if self._state:
            raise RuntimeError("future already done")
        self._state, self._value = state, value
        cbs, self._cbs = self._cbs, []
        for cb in cbs:
            cb(self)

    def set_result(self, value) -> None:
        self._settle(1, value)

    def set_exception(self, exc) -> None:
        self._settle(2, exc)

    def result(self):
        if self._state == 2:
            raise self._value
        return self._value

    def exception(self):
        return self._value if self._state == 2 else None

    def add_done_callback(self, cb) -> None:
        if self._state:
            cb(self)
        else:
            self._cbs.append(cb)


class SimLoop:
    """Virtual time: events run in (time, order of scheduling) order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._q: list = []
        self._seq = 0

    def call_at(self, when: float, fn, *args) -> _Handle:
        h = _Handle()
        self._seq += 1
        heapq.heappush(self._q, (when, self._seq, h, fn, args))
        return h

    def run_until(self, t: float) -> None:
        q = self._q
        while q and q[0][0] <= t:
            when, _, h, fn, args = heapq.heappop(q)
            if when > self.now:
                self.now = when
            if not h.cancelled:
                fn(*args)
        self.now = t


class NodeLoop:
    """The loop one incarnation of a member sees: its callbacks die with it."""

    __slots__ = ("sim", "alive")

    def __init__(self, sim: SimLoop) -> None:
        self.sim = sim
        self.alive = True

    def time(self) -> float:
        return self.sim.now

    def _run(self, fn, args) -> None:
        if self.alive:
            fn(*args)

    def call_soon(self, fn, *args) -> _Handle:
        return self.sim.call_at(self.sim.now, self._run, fn, args)

    def call_later(self, delay: float, fn, *args) -> _Handle:
        return self.sim.call_at(self.sim.now + delay, self._run, fn, args)

    def create_future(self) -> SimFuture:
        return SimFuture()


# ---- disk --------------------------------------------------------------------------

class SimDisk:
    """The driver's ``store`` for one member. Records are (snapshot, entries, hard
    state); ``records[:synced]`` are durable. ``done_*`` is the log as far as writes
    have completed in this incarnation (what the driver may apply and send)."""

    def __init__(self, cl: "DriverCluster", node: "DriverNode") -> None:
        self.cl = cl
        self.node = node
        self.records: list = []
        self.synced = 0
        self.durable_hs = HardState()
        self.busy = False
        self.done_terms: dict = {}
        self.done_last = 0
        self.done_snap = 0

    # -- the store interface (driver.py) --

    def load(self):
        snap, ents, hs = None, [], HardState()
        for rsnap, entries, rhs in self.records:
            if rsnap is not None and (snap is None or
                                      rsnap.metadata.index > snap.metadata.index):
                snap = rsnap
            if entries:
                first = entries[0].index
                k = len(ents)
                while k and ents[k - 1].index >= first:
                    k -= 1
                del ents[k:]
                ents.extend(entries)
            if rhs is not None:
                hs = rhs
        si = snap.metadata.index if snap is not None else 0
        ents = [e for e in ents if e.index > si]
        self.done_terms = {e.index: e.term for e in ents}
        self.done_last = ents[-1].index if ents else 0
        self.done_snap = si
        return snap, ents, hs

    def bootstrap(self, hs, entries) -> None:
        self.records.append((None, list(entries), hs))
        self._sync_to(len(self.records))

    def save(self, rd, sync: bool, done, inline: bool = False, meanwhile=None) -> bool:
        if self.busy:
            self.cl.checker.fail(f"driver contract: node {self.node.id} started a write "
                                 "before the last one completed")
        rec = (rd.snapshot, rd.entries, rd.hard_state)
        self.records.append(rec)
        if not sync:
            self._completed(rec)
            return True
        if inline and self.cl.sc.inline_writes and rd.snapshot is None:
            if meanwhile is not None:
                meanwhile()   # written, not yet synced nor seen as done
            self._sync_to(len(self.records))   # written and synced on the caller's turn
            self._completed(rec)
            return True
        self.busy = True
        self.node.loop.call_later(self.cl.disk_delay(), self._finish, len(self.records),
                                  rec, done)
        return False

    def _finish(self, pos: int, rec, done) -> None:
        self.busy = False
        self._sync_to(pos)
        self._completed(rec)
        done(None)

    def save_snapshot(self, snap, before, done) -> None:
        if self.busy:
            self.cl.checker.fail(f"driver contract: node {self.node.id} saves a snapshot "
                                 "while a write is in flight")
        if before is not None:
            before()
        rec = (snap, [], None)
        self.records.append(rec)
        self.busy = True

        def finish(pos: int) -> None:
            self.busy = False
            self._sync_to(pos)
            self._completed(rec)
            done(None, 0)
        self.node.loop.call_later(self.cl.disk_delay(), finish, len(self.records))

    def close(self) -> None:
        pass

    # -- bookkeeping --

    def _sync_to(self, pos: int) -> None:
        for rec in self.records[self.synced:pos]:
            if rec[2] is not None:
                self.durable_hs = rec[2]
        self.synced = max(self.synced, pos)

    def _completed(self, rec) -> None:
        self.cl.on_written(self.node, rec)
        snap, entries, _ = rec
        if snap is not None and snap.metadata.index > self.done_snap:
            self.done_snap = snap.metadata.index
        if entries:
            terms = self.done_terms
            for i in range(entries[0].index, self.done_last + 1):
                terms.pop(i, None)
            for e in entries:
                terms[e.index] = e.term
            self.done_last = entries[-1].index

    def written(self, e) -> bool:
        return e.index <= self.done_snap or self.done_terms.get(e.index) == e.term

    def crash(self, rng: random.Random, lose_all: float) -> int:
        """Keep the durable records and, unless all are lost, a prefix of the rest;
        -> how many records were lost."""
        n = len(self.records)
        k = self.synced if rng.random() < lose_all else rng.randint(self.synced, n)
        del self.records[k:]
        self.synced = k
        self.busy = False
        self.durable_hs = HardState()
        for rec in self.records:
            if rec[2] is not None:
                self.durable_hs = rec[2]
        return n - k


# ---- members -----------------------------------------------------------------------

class LocalReadFlag:
    """The driver's ``read_state`` (the server's: kvcore/ipc/readstate.py)."""

    __slots__ = ("local", "leader")

    def __init__(self) -> None:
        self.local = False
        self.leader = False

    def set_local(self, on: bool) -> None:
        self.local = on

    def set_leader(self, known: bool) -> None:
        self.leader = known


class DriverNode:
    def __init__(self, nid: int) -> None:
        self.id = nid
        self.disk: SimDisk | None = None
        self.driver: RaftDriver | None = None
        self.loop: NodeLoop | None = None
        self.sm: StateMachine | None = None
        self.proposer = None
        self.flag = LocalReadFlag()
        self.incarnation = 0
        self.last_commit = 0   # commit index of the last hard state written
        self.staged = None     # entries the state machine staged (driver's stage())
        self.held_until = None  # applies held (hold_applies) until this time

    @property
    def raw(self):
        d = self.driver
        return d.node if d is not None else None

    @property
    def alive(self) -> bool:
        return self.driver is not None


class DriverScenario(Scenario):
    def __init__(self, seed: int, chaos_ticks: int = 150, heal_ticks: int = 400) -> None:
        super().__init__(seed, chaos_ticks, heal_ticks)
        rng = random.Random(seed * 104729 + 7)
        if rng.random() < 0.12:
            self.n = 1   # a single voter: commit without peers, local reads
        self.disk_delay = rng.choice((0.0, 0.3, 1.0, 2.5))
        self.lose_all_unsynced = rng.choice((0.5, 0.9))
        # Whether the disk takes the driver's inline hint (a write completed on the
        # caller's turn); its own stream, so the schedules above stay as they were.
        self.inline_writes = random.Random(seed * 7919 + 3).random() < 0.5
        # Whether members hold their applies now and then, as a defragmentation does
        # (RaftDriver.hold_applies); its own stream too, seeds 154 and 14822 kept as
        # they were.
        self.hold_applies = (random.Random(seed * 6007 + 29).random() < 0.5
                             and seed not in (154, 14822))

    def describe(self) -> str:
        return (super().describe() + f" disk<={self.disk_delay} "
                f"lose_unsynced={self.lose_all_unsynced} inline={self.inline_writes} "
                f"hold={self.hold_applies}")


def _raise(exc: BaseException) -> None:
    raise exc


class DirectWakeProposer:
    """The server's Proposer, but the first proposal of a batch wakes the driver at
    once instead of one loop pass later: it moves Ready boundaries, which is how
    seed 1006 reached a conf change applied after a newer snapshot's restore."""

    def __init__(self, inner, wake) -> None:
        self._inner, self._wake = inner, wake

    def propose(self, op, request):
        first = not self._inner.has_pending()
        fut = self._inner.propose(op, request)
        if first:
            self._wake()
        return fut

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class DriverCluster(Cluster):
    node_class = DriverNode

    def __init__(self, sc: DriverScenario, *, driver_cls=RaftDriver, trace=None,
                 contract: bool = True, direct_wake: bool = False) -> None:
        self.sc = sc
        self.direct_wake = direct_wake
        self.contract = contract   # False: only end-to-end checks (safety, reads, acks)
        self.rng = random.Random(sc.rng_seed)
        self.check = True
        self.codec = True
        self.trace = trace
        self.driver_cls = driver_cls
        self.checker = SafetyChecker()
        self.sim = SimLoop()
        self.now = 0
        self.groups = None
        self.cut: set = set()
        self.removed: set = set()
        self.nodes: dict = {}
        self.next_id = sc.n + 1
        self.write_seq = 0
        self.read_seq = 0
        self.acked: set = set()     # indexes of acknowledged writes
        self.stats = {"delivered": 0, "dropped": 0, "proposals": 0, "dropped_props": 0,
                      "reads_served": 0, "reads_local": 0, "read_errors": 0, "acked": 0,
                      "crashes": 0, "records_lost": 0, "snapshots_sent": 0,
                      "conf_changes": 0, "conf_errors": 0, "transfers": 0,
                      "compactions": 0, "max_term": 0, "read_retries": 0,
                      "applied_during_write": 0, "staged": 0}
        self._read_asked: set = set()   # ReadIndex contexts sent to a leader
        # Leadership rounds (RaftDriver.confirm_leadership, what lease renewals rest
        # on): (node, term, started at) of each that succeeded. Its own random stream,
        # so the schedules stay as they were.
        self.confirm_rng = random.Random(sc.rng_seed * 31 + 5)
        self.confirmed: list = []
        self.stats["leadership_confirmed"] = 0
        self._transfers_seen = 0
        self.hold_rng = random.Random(sc.rng_seed * 17 + 9)
        self.stats["apply_holds"] = 0
        self.holds_over = False
        self._last_transfer = -10 ** 9
        cs = ConfState(list(range(1, sc.n + 1)))
        # The bootstrap snapshot's index 1 (term 1) is committed: the reference log
        # starts there, so the commit checks have something to extend.
        self.checker.ref_terms.append(1)
        for nid in range(1, sc.n + 1):
            # Every initial member starts from the same snapshot at index 1 holding the
            # initial membership (like etcd's bootstrap entries).
            node = DriverNode(nid)
            node.disk = SimDisk(self, node)
            boot = StateMachine()
            boot.applied = 1
            node.disk.records.append((Snapshot(boot.snapshot_data(),
                                               SnapshotMetadata(cs, 1, 1)), [],
                                      HardState(1, 0, 1)))
            node.disk._sync_to(1)
            self.nodes[nid] = node
            self.start(node)

    def disk_delay(self) -> float:
        d = self.sc.disk_delay
        return self.rng.random() * d if d else 0.0

    # -- lifecycle --

    def start(self, node: DriverNode) -> None:
        if node.disk is None:
            node.disk = SimDisk(self, node)
        node.incarnation += 1
        loop = node.loop = NodeLoop(self.sim)
        sc = self.sc
        drv = self.driver_cls(
            node.id, node.disk, election_tick=sc.election_tick, heartbeat_ms=1000,
            apply=lambda snap, ents: self._apply(node, snap, ents),
            stage=lambda ents: self._stage(node, ents),
            on_leader_change=lambda old, new: None,
            send=lambda msgs: self._send(node, msgs), loop=loop,
            pre_vote=sc.pre_vote, check_quorum=sc.check_quorum, on_fatal=_raise,
            read_retry=READ_RETRY, max_size_per_msg=sc.max_size_per_msg,
            max_inflight_msgs=sc.max_inflight, rng=random.Random(self.rng.getrandbits(64)),
            read_ctx_base=node.incarnation << 32)
        node.driver = drv
        node.held_until = None
        drv.restore(0, None)   # the model state machine is volatile: from the snapshot
        snap = drv.storage.snapshot()
        node.sm = StateMachine.restore(snap.data)
        node.flag = LocalReadFlag()
        drv.read_state = node.flag
        node.proposer = Proposer(loop, node.id, node.incarnation << 24, drv.wake)
        if self.direct_wake:
            node.proposer = DirectWakeProposer(node.proposer, drv.wake)
        drv.proposer = node.proposer
        node.last_commit = drv.committed
        if snap.metadata.index > 1:
            self.checker.on_snapshot_restore(node.id, snap.metadata.index, node.sm.digest)
        drv.start()
        self.log(f"start {node.id} (incarnation {node.incarnation})")

    def crash(self, node: DriverNode) -> None:
        node.loop.alive = False
        node.driver._stopped = True
        node.driver = node.sm = node.proposer = node.staged = None
        lost = node.disk.crash(self.rng, self.sc.lose_all_unsynced)
        self.stats["crashes"] += 1
        self.stats["records_lost"] += lost
        self.log(f"crash {node.id} ({lost} unsynced records lost)")

    def process_ready(self, node) -> None:
        node.driver.wake()

    # -- the driver's injected I/O --

    def on_written(self, node: DriverNode, rec) -> None:
        """A write of ``node`` completed (the driver has not seen it yet). Only now
        is a one-voter leader's commit real: it counts its own entries before they
        are written."""
        chk = self.checker
        snap, entries, hs = rec
        if snap is not None:
            md = snap.metadata
            chk.on_snapshot_commit(md.index, md.term)
        if entries:
            chk.on_persist(node.id, node.driver.storage, entries)
        if hs is not None:
            if hs.commit > node.last_commit:
                chk.on_commit(node.id, node.driver.node.raft, node.last_commit, hs.commit)
            node.last_commit = hs.commit

    def _stage(self, node: DriverNode, entries: list) -> bool:
        """The driver's ``stage``: the model takes the entries in hand (nothing of
        them visible) and checks that their apply follows before the loop runs
        anything else. Every third is declined, so both answers are exercised."""
        if entries[0].index % 3 == 0:
            return False
        if node.staged is not None:
            self.checker.fail(f"driver contract: node {node.id} staged entries again "
                              "before applying the ones it staged")
        node.staged = [(e.index, e.term) for e in entries]
        self.stats["staged"] += 1
        incarnation = node.incarnation

        def applied_in_turn() -> None:
            if node.incarnation == incarnation and node.staged is not None:
                self.checker.fail(f"driver contract: node {node.id}'s staged entries "
                                  "were not applied in the turn that staged them")
        node.loop.call_soon(applied_in_turn)
        return True

    def _apply(self, node: DriverNode, snapshot, entries: list) -> None:
        chk = self.checker
        drv = node.driver
        if node.staged is not None:
            if snapshot is not None or node.staged != [(e.index, e.term) for e in entries]:
                chk.fail(f"driver contract: node {node.id} applies other entries than "
                         f"the ones it staged ({node.staged})")
            node.staged = None
        if snapshot is not None:
            node.sm = StateMachine.restore(snapshot.data)
            drv.conf_state = snapshot.metadata.conf_state
            chk.on_snapshot_restore(node.id, snapshot.metadata.index, node.sm.digest)
        sm = node.sm
        disk = node.disk
        if disk.busy and entries:
            self.stats["applied_during_write"] += 1   # the overlap of apply and write
        for e in entries:
            if e.index <= sm.applied:
                continue
            if e.index != sm.applied + 1:
                chk.fail(f"node {node.id} applies {e.index} after {sm.applied}")
            if self.contract and not disk.written(e):
                chk.fail(f"persist before apply: node {node.id} applies entry {e.index} "
                         f"(term {e.term}) before writing it")
            sm.apply(e)
            chk.on_apply(node.id, e, sm.digest)
            if e.type == EntryConfChange:
                self._apply_conf_change(node, e)
            elif e.data:
                fut = node.proposer.waiter(int.from_bytes(e.data[:8], "little"))
                if fut is not None and not fut.done():
                    fut.set_result(e.index)

    def _apply_conf_change(self, node: DriverNode, e) -> None:
        drv = node.driver
        cc = decode_conf_change(e.data)
        drv.stop_local_reads()
        try:
            before = drv.conf_state
            drv.apply_conf_change(e.index, cc)
        except ConfChangeError as err:
            self.stats["conf_errors"] += 1
            self.log(f"node {node.id} conf change {cc} refused: {err}")
            return
        self._note_removed(before, drv.conf_state)
        self.log(f"node {node.id} applied {cc} -> {drv.conf_state}")
        if any(c.type in (ConfChangeType.AddNode, ConfChangeType.AddLearnerNode)
               for c in cc.changes):
            # A member added now may need a snapshot; the one Storage hands out must
            # include it (etcd forces a snapshot here too).
            drv.save_snapshot(e.index, node.sm.snapshot_data(), catch_up=1 << 40)

    def _check_own_count(self, node: DriverNode, raft) -> None:
        """A leader that sends before writing counts toward the quorum none of its own
        entries of this term that it has not written."""
        pr = raft.trk.progress.get(raft.id)
        if pr is None or not pr.match:
            return
        try:
            term = raft.raft_log.term(pr.match)
        except Exception:
            return
        if term == raft.term and not node.disk.written(Entry(term=term, index=pr.match)):
            self.checker.fail(f"persist before send: leader {node.id} counts its entry "
                              f"{pr.match} (term {term}) before writing it")

    def _send(self, node: DriverNode, msgs: list) -> None:
        chk = self.checker
        chk.on_state(node.id, node.driver.node.raft)
        disk = node.disk
        dhs = disk.durable_hs
        rng = self.rng
        sc = self.sc
        for m in msgs:
            t = m.type
            if self.contract and t != MsgPreVote and t != MsgPreVoteResp:
                if m.term > dhs.term:
                    chk.fail(f"persist before send: node {node.id} sends a "
                             f"{MessageType(t).name} of term "
                             f"{m.term}, its durable term is {dhs.term}")
                # A vote granted in term T binds while the durable term is T (a
                # later durable term can never vote in T again).
                if t == MsgVoteResp and not m.reject and dhs.term == m.term and \
                        dhs.vote != m.to:
                    chk.fail(f"persist before send: node {node.id} grants its vote to "
                             f"{m.to} in term {m.term}, durable: vote {dhs.vote} in term "
                             f"{dhs.term}")
                if t == MsgApp:
                    raft = node.driver.node.raft
                    if raft.sends_before_persist():
                        # A leader with other voters may send its appends before
                        # writing them, so long as it counts only what it wrote.
                        self._check_own_count(node, raft)
                    else:
                        for e in m.entries:
                            if not disk.written(e):
                                chk.fail(f"persist before send: node {node.id} sends "
                                         f"entry {e.index} (term {e.term}) before "
                                         f"writing it")
            if t == MsgSnap:
                self.stats["snapshots_sent"] += 1
            elif t == MsgReadIndex:
                ctx = m.entries[0].data
                if ctx in self._read_asked:
                    self.stats["read_retries"] += 1
                self._read_asked.add(ctx)
            payload = encode_message(m)
            copies = 2 if sc.dup and rng.random() < sc.dup else 1
            for _ in range(copies):
                if sc.drop and rng.random() < sc.drop:
                    self.stats["dropped"] += 1
                    if t == MsgSnap:
                        node.driver.report_snapshot(m.to, True)
                    continue
                delay = rng.random() * sc.max_delay if sc.max_delay else 0.0
                self.sim.call_at(self.sim.now + delay, self._deliver, m.to, m.frm,
                                 node.incarnation, t, payload)

    def _deliver(self, to: int, frm: int, inc: int, mtype: int, payload: bytes) -> None:
        node = self.nodes.get(to)
        src = self.nodes.get(frm)
        src_drv = src.driver if src is not None and src.incarnation == inc else None
        if node is None or node.driver is None or not self.linked(frm, to) or \
                frm in self.removed:
            self.stats["dropped"] += 1
            if src_drv is not None:
                # The transport tells the sender (etcd's ReportSnapshot/Unreachable).
                if mtype == MsgSnap:
                    src_drv.report_snapshot(to, True)
                else:
                    src_drv.report_unreachable(to)
            return
        self.stats["delivered"] += 1
        node.driver.step(decode_message(payload))
        if mtype == MsgSnap and src_drv is not None:
            src_drv.report_snapshot(to, False)

    # -- clients --

    def propose(self, node: DriverNode, count: int = 1) -> None:
        for _ in range(count):
            self.write_seq += 1
            fut = node.proposer.propose(1, b"w%d" % self.write_seq)
            fut.add_done_callback(self._on_write_done)
        self.stats["proposals"] += count

    def _on_write_done(self, fut) -> None:
        if fut.exception() is not None:
            self.stats["dropped_props"] += 1
            return
        self.acked.add(fut.result())
        self.stats["acked"] += 1

    def confirm(self, node: DriverNode) -> None:
        drv = node.driver
        if not drv.is_leader:
            return
        t0, term, inc = self.now, node.raw.raft.term, node.incarnation

        def done(fut) -> None:
            if node.incarnation == inc and fut.exception() is None:
                self.stats["leadership_confirmed"] += 1
                self.confirmed.append((node.id, term, t0))
        drv.confirm_leadership().add_done_callback(done)

    def check_confirmed(self) -> None:
        """A leadership round that a quorum acknowledged, started at t0, means no other
        node wins an election before t0 + the election timeout (the acknowledging
        members reset their timers after t0 and, with check-quorum, refuse votes
        until their timeout passes). A leadership transfer is the exception: its
        target campaigns at once, with the old leader's consent."""
        et = self.sc.election_tick
        if self.stats["transfers"] != self._transfers_seen:
            self._transfers_seen = self.stats["transfers"]
            self._last_transfer = self.now
        self.confirmed = [c for c in self.confirmed if self.now < c[2] + et]
        for node in self.alive_nodes():
            r = node.driver.node.raft
            if not node.driver.is_leader:
                continue
            for nid, term, t0 in self.confirmed:
                if nid != node.id and r.term > term and self._last_transfer < t0 - 1:
                    self.checker.fail(
                        f"node {node.id} leads term {r.term} at {self.now}, before "
                        f"{t0 + et}: node {nid}'s leadership of term {term} was "
                        f"confirmed by a round started at {t0}")

    def read(self, node: DriverNode) -> None:
        if self.confirm_rng.random() < 0.5:
            self.confirm(node)
        self.read_seq += 1
        ctx = b"r%d" % self.read_seq
        chk = self.checker
        acked = chk.max_acked_write
        committed = len(chk.ref_terms) - 1
        if node.flag.local:
            # Served by a worker without asking Raft: every acknowledged write shows.
            self.stats["reads_local"] += 1
            self._serve(node, ctx, acked, 0)
            return
        inc = node.incarnation
        self.log(f"read {ctx!r} at node {node.id}: acked {acked}, committed {committed}")

        def answered(fut) -> None:
            if node.incarnation != inc or node.sm is None:
                return
            if fut.exception() is not None:
                self.stats["read_errors"] += 1
                return
            self._serve(node, ctx, acked, committed)
        node.driver.read_index().add_done_callback(answered)

    def _serve(self, node: DriverNode, ctx: bytes, acked: int, committed: int) -> None:
        sm = node.sm
        self.stats["reads_served"] += 1
        self.log(f"read {ctx!r} served by node {node.id} at applied {sm.applied}")
        if sm.applied < committed:
            self.checker.fail(f"stale read: node {node.id} answered ReadIndex read {ctx!r} "
                              f"at applied index {sm.applied}; index {committed} was "
                              "committed before it was issued")
        self.checker.on_read(node.id, ctx, acked, -1, sm.applied, sm.last_write)

    def compact(self, node: DriverNode) -> None:
        drv = node.driver
        i = drv.applied
        if i - drv.storage.first_index() < 4 or i <= drv.storage.snap.metadata.index:
            return
        drv.save_snapshot(i, node.sm.snapshot_data(), catch_up=self.rng.randint(0, 5))
        self.stats["compactions"] += 1

    # -- time --

    def hold_or_release(self) -> None:
        """Hold a member's applies for a few heartbeats (a defragmentation's copy),
        then release them; all released, and no more held, once the network heals."""
        heal = self.holds_over
        for node in self.alive_nodes():
            if node.held_until is not None and (heal or self.now >= node.held_until):
                node.held_until = None
                self.log(f"release applies {node.id}")
                node.driver.release_applies()
            elif (node.held_until is None and not heal and self.sc.hold_applies
                  and self.hold_rng.random() < 0.01):
                node.held_until = self.now + self.hold_rng.randint(1, 3 * self.sc.election_tick)
                self.stats["apply_holds"] += 1
                self.log(f"hold applies {node.id} until {node.held_until}")
                node.driver.hold_applies()

    def heal_all(self) -> None:
        self.holds_over = True
        self.hold_or_release()
        super().heal_all()

    def step_time(self) -> None:
        self.hold_or_release()
        self.now += 1
        self.sim.run_until(float(self.now))
        self.check_confirmed()
        chk = self.checker
        for node in self.alive_nodes():
            r = node.driver.node.raft
            chk.on_state(node.id, r)
            if r.term > self.stats["max_term"]:
                self.stats["max_term"] = r.term

    def check_acked_writes(self) -> None:
        """Every acknowledged write is still in the final leader's log (where not
        compacted) and was applied identically everywhere."""
        chk = self.checker
        ld = self.leader()
        log = ld.raw.raft.raft_log
        lo, hi = log.first_index(), log.last_index()
        for i in sorted(self.acked):
            term, etype, data = chk.ref_applied[i]
            if lo <= i <= hi:
                e = log.slice(i, i + 1)[0]
                if (e.term, e.data) != (term, data):
                    chk.fail(f"acknowledged write lost: index {i} holds term {e.term} in "
                             f"the final leader's log, the write was term {term}")


def run_seed(seed: int, *, driver_cls=RaftDriver, trace=None, chaos_ticks: int = 150,
             heal_ticks: int = 400, contract: bool = True, direct_wake: bool = False) -> dict:
    """Run one seeded scenario over the given driver class; raises SafetyViolation /
    LivenessFailure (AssertionErrors) naming the seed. ``direct_wake``: proposals wake
    the driver in the same loop turn (another schedule of the same code)."""
    sc = DriverScenario(seed, chaos_ticks, heal_ticks)
    cl = None
    try:
        cl = DriverCluster(sc, driver_cls=driver_cls, trace=trace, contract=contract,
                           direct_wake=direct_wake)
        for _ in range(sc.chaos_ticks):
            cl.chaos_tick()
        cl.heal_all()
        t_lead, t_commit = cl.converge(sc.heal_ticks)
        cl.check_final_agreement()
        cl.check_acked_writes()
    except (SafetyViolation, LivenessFailure, AssertionError) as e:
        at = f" at tick {cl.now}\n{cl.dump()}" if cl is not None else ""
        raise type(e)(f"{e}{at}\n  scenario: {sc.describe()}\n  replay: python -m "
                      f"tests.sim.driversim --seed {seed} -v") from e
    out = dict(cl.stats)
    out.update(seed=seed, n=sc.n, t_lead=t_lead, t_commit=t_commit)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    ap.add_argument("--mutant", help="run a driver mutant (tests/sim/mutants.py)")
    a = ap.parse_args(argv)
    cls = RaftDriver
    if a.mutant:
        from .mutants import driver_mutant
        cls = driver_mutant(a.mutant)
    try:
        out = run_seed(a.seed, driver_cls=cls, trace=print if a.verbose else None)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"ok: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
