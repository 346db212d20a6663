"""The simulated cluster of the driver simulator (driversim.py): every member a real
``RaftDriver`` (kvcore/raftdriver/driver.py) wired, instead of the server's WAL, peer
transport, LMDB state machine and asyncio loop, to a ``SimDisk`` (simdisk.py), the
network of cluster.py (drops, duplicates, delays so reordering, partitions, one-way
cuts, removed members rejected; every message through the codec), a model state
machine (cluster.StateMachine), the server's Proposer and a ``NodeLoop``
(simloop.py). Members start, crash (losing what their disk did not sync) and restart;
clients write, read, confirm leadership and compact through them. The checks it
makes on the way are drivercontract.py's and checkers.py's.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from kvcore.raft import ConfState, HardState, Snapshot, SnapshotMetadata
from kvcore.raft.codec import decode_conf_change, decode_message, encode_message
from kvcore.raft.errors import ConfChangeError
from kvcore.raft.types import (ConfChangeType, EntryConfChange, MsgPreVote, MsgPreVoteResp,
                               MsgReadIndex, MsgSnap)
from kvcore.raftdriver.driver import RaftDriver

from kvcore.server.entry import Proposer   # the server's (compiled or twin)

from .checkers import SafetyChecker
from .cluster import Cluster, StateMachine
from .drivercontract import DriverContractChecks
from .simdisk import SimDisk
from .simloop import NodeLoop, SimLoop

if TYPE_CHECKING:
    from .driversim import DriverScenario

READ_RETRY = 5.0   # heartbeats (the server: 0.5 s at 100 ms)


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
    """One member: its disk survives crashes; its driver, loop, state machine and
    proposer are one incarnation's."""

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


class DriverCluster(DriverContractChecks, Cluster):
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

    # -- the driver's injected I/O (its checks: drivercontract.py) --

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

    def _send(self, node: DriverNode, msgs: list) -> None:
        chk = self.checker
        chk.on_state(node.id, node.driver.node.raft)
        dhs = node.disk.durable_hs
        rng = self.rng
        sc = self.sc
        for m in msgs:
            t = m.type
            if self.contract and t != MsgPreVote and t != MsgPreVoteResp:
                self._check_persisted_before_send(node, m, dhs)
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
