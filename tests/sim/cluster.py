"""Seeded cluster simulator for kvcore.raft.

Everything about a run derives from one integer seed: cluster size (3, 5 or 7), features
(pre-vote, check-quorum), fault rates, and every random choice during the run.  There is
no wall clock and no global random state, so a seed replays exactly:

    python -m tests.sim.replay --seed N [-v]

The network drops, duplicates, delays (reorders) messages, partitions and heals (also
one-way link failures).  Nodes crash and restart keeping only their durable state: the
MemoryStorage the driver appended to from each Ready *before* sending its messages.  A
node's Raft object, unstable entries, unsent messages and state machine are volatile.

A run has two phases: ``chaos`` (faults, client writes, ReadIndex reads, membership
changes, leader transfers, log compaction) and ``heal`` (network healed, crashed nodes
restarted, no more faults) in which liveness is measured: ticks until a leader is
elected and a fresh proposal is applied by every member.
"""
from __future__ import annotations

import heapq
import random
import struct
import zlib

from kvcore.raft import (Config, ConfChange, ConfChangeSingle, ConfChangeTransition,
                         ConfChangeType, ConfState, MemoryStorage, ProposalDropped,
                         RawNode, Snapshot, SnapshotMetadata, HardState)
from kvcore.raft.codec import decode_conf_change, decode_message, encode_message
from kvcore.raft.errors import ConfChangeError, ErrCompacted, ErrSnapOutOfDate
from kvcore.raft.types import EntryConfChange, MsgSnap, StateLeader

from .checkers import SafetyChecker, SafetyViolation


class LivenessFailure(AssertionError):
    pass


class Scenario:
    """Parameters of one run, all drawn from the seed."""

    def __init__(self, seed: int, chaos_ticks: int = 150, heal_ticks: int = 400) -> None:
        rng = random.Random(seed * 7919 + 17)
        self.seed = seed
        self.n = rng.choices((3, 5, 7), (5, 3, 2))[0]
        self.pre_vote = rng.random() < 0.5
        self.check_quorum = rng.random() < 0.5
        self.election_tick = 10
        self.heartbeat_tick = 1
        self.max_inflight = rng.choice((1, 2, 4, 64))
        self.max_size_per_msg = rng.choice((64, 1024, 1 << 20))
        self.drop = rng.choice((0.0, 0.02, 0.1, 0.25))
        self.dup = rng.choice((0.0, 0.02, 0.1))
        self.max_delay = rng.choice((0, 1, 3))
        self.partition_rate = rng.choice((0.0, 0.02, 0.05))
        self.crash_rate = rng.choice((0.0, 0.01, 0.03))
        self.propose_rate = rng.choice((0.3, 0.8))
        self.read_rate = rng.choice((0.1, 0.4))
        self.conf_rate = rng.choice((0.0, 0.0, 0.02, 0.05))
        self.transfer_rate = rng.choice((0.0, 0.01, 0.03))
        self.compact_rate = rng.choice((0.0, 0.05, 0.2))
        self.chaos_ticks = chaos_ticks
        self.heal_ticks = heal_ticks
        self.rng_seed = rng.getrandbits(64)

    def describe(self) -> str:
        return (f"seed={self.seed} n={self.n} prevote={self.pre_vote} "
                f"checkquorum={self.check_quorum} inflight={self.max_inflight} "
                f"maxmsg={self.max_size_per_msg} drop={self.drop} dup={self.dup} "
                f"delay<={self.max_delay} part={self.partition_rate} "
                f"crash={self.crash_rate} conf={self.conf_rate} "
                f"transfer={self.transfer_rate} compact={self.compact_rate}")


_SM = struct.Struct("<QIQ")


class StateMachine:
    """A register: the value is the last write; ``digest`` chains every applied entry so
    two nodes that applied different histories disagree."""

    __slots__ = ("applied", "digest", "last_write")

    def __init__(self) -> None:
        self.applied = 0
        self.digest = 0
        self.last_write = 0   # index of the write the register holds

    def apply(self, e) -> None:
        self.digest = zlib.crc32(e.data, zlib.crc32(struct.pack("<QQB", e.index, e.term,
                                                                e.type), self.digest))
        self.applied = e.index
        if e.type == 0 and e.data:
            self.last_write = e.index

    def apply_fast(self, e) -> None:
        """No digest: for throughput runs, so the figure is Raft's cost, not ours."""
        self.applied = e.index
        if e.data:
            self.last_write = e.index

    def snapshot_data(self) -> bytes:
        return _SM.pack(self.applied, self.digest, self.last_write)

    @classmethod
    def restore(cls, data: bytes) -> "StateMachine":
        sm = cls()
        if data:
            sm.applied, sm.digest, sm.last_write = _SM.unpack(data)
        return sm


class SimNode:
    def __init__(self, nid: int) -> None:
        self.id = nid
        self.storage = MemoryStorage()  # durable
        self.raw: RawNode | None = None
        self.sm: StateMachine | None = None
        self.conf_state = ConfState()
        self.incarnation = 0
        self.pending_reads: dict[bytes, tuple] = {}   # ctx -> (issued_acked, index)
        self.issued_reads: dict[bytes, int] = {}      # ctx -> issued_acked
        self.deferred = None   # bug mode: a Ready whose persist was deferred
        self.last_commit = 0   # commit index in durable hard state

    @property
    def alive(self) -> bool:
        return self.raw is not None


class Cluster:
    node_class = SimNode

    def __init__(self, sc: Scenario, *, check: bool = True, codec: bool = True,
                 bug_send_before_persist: bool = False, trace=None) -> None:
        self.sc = sc
        self.rng = random.Random(sc.rng_seed)
        self.check = check
        self.codec = codec
        self.bug_send_before_persist = bug_send_before_persist
        self.trace = trace
        self.checker = SafetyChecker()
        self.now = 0
        self.queue: list = []       # heap of (deliver_at, tiebreak, to, frm, payload)
        self.groups: dict[int, int] | None = None   # node -> partition group
        self.cut: set = set()       # directed links down (frm, to)
        self.removed: set = set()   # ids a committed config dropped (transport rejects)
        self.nodes: dict[int, SimNode] = {}
        self.next_id = sc.n + 1
        self.write_seq = 0
        self.read_seq = 0
        self.stats = {"delivered": 0, "dropped": 0, "proposals": 0, "dropped_props": 0,
                      "reads_served": 0, "crashes": 0, "snapshots_sent": 0,
                      "conf_changes": 0, "conf_errors": 0, "transfers": 0,
                      "compactions": 0, "max_term": 0}
        voters = list(range(1, sc.n + 1))
        # The bootstrap snapshot's index 1 (term 1) is committed: the reference log
        # starts there, so the commit checks have something to extend.
        self.checker.ref_terms.append(1)
        for nid in voters:
            node = SimNode(nid)
            # Bootstrap: every initial member starts from the same snapshot at index 1
            # holding the initial membership (like etcd's bootstrap entries).
            cs = ConfState(voters)
            boot = StateMachine()
            boot.applied = 1
            node.storage.apply_snapshot(Snapshot(boot.snapshot_data(),
                                                 SnapshotMetadata(cs, 1, 1)))
            node.storage.set_hard_state(HardState(1, 0, 1))
            self.nodes[nid] = node
            self.start(node)

    # -- node lifecycle ----------------------------------------------------------------

    def log(self, msg: str) -> None:
        if self.trace is not None:
            self.trace(f"[{self.now:5d}] {msg}")

    def start(self, node: SimNode) -> None:
        st = node.storage
        snap = st.snapshot()
        node.sm = StateMachine.restore(snap.data)
        node.conf_state = snap.metadata.conf_state
        node.incarnation += 1
        sc = self.sc
        cfg = Config(node.id, st, election_tick=sc.election_tick,
                     heartbeat_tick=sc.heartbeat_tick, applied=snap.metadata.index,
                     max_size_per_msg=sc.max_size_per_msg,
                     max_inflight_msgs=sc.max_inflight, check_quorum=sc.check_quorum,
                     pre_vote=sc.pre_vote, rng=random.Random(self.rng.getrandbits(64)))
        node.raw = RawNode(cfg)
        node.pending_reads = {}
        node.issued_reads = {}
        node.deferred = None
        node.last_commit = st.hard_state.commit
        if self.check and snap.metadata.index > 1:
            self.checker.on_snapshot_restore(node.id, snap.metadata.index, node.sm.digest)
        self.log(f"start {node.id} (incarnation {node.incarnation})")

    def crash(self, node: SimNode) -> None:
        node.raw = None
        node.sm = None
        node.deferred = None
        self.stats["crashes"] += 1
        self.log(f"crash {node.id}")

    # -- driver ------------------------------------------------------------------------

    def process_ready(self, node: SimNode) -> None:
        raw = node.raw
        if node.deferred is not None:
            self._finish_ready(node, node.deferred)
            node.deferred = None
        while raw.has_ready():
            rd = raw.ready()
            if self.bug_send_before_persist:
                # Deliberately broken driver: send first, persist "later".
                self._send(node, rd.messages)
                rd.messages = []
                node.deferred = rd
                return
            self._finish_ready(node, rd)
        if self.check:
            self.checker.on_state(node.id, raw.raft)

    def _finish_ready(self, node: SimNode, rd) -> None:
        raw = node.raw
        st = node.storage
        chk = self.checker if self.check else None
        # 1. persist
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
            if chk:
                md = rd.snapshot.metadata
                chk.on_snapshot_commit(md.index, md.term)
        if rd.entries:
            if chk:
                chk.on_persist(node.id, st, rd.entries)
            st.append(rd.entries)
        hs = rd.hard_state
        if hs is not None:
            st.set_hard_state(hs)
            if chk and hs.commit > node.last_commit:
                chk.on_commit(node.id, raw.raft, node.last_commit, hs.commit)
            node.last_commit = hs.commit
        # 2. send
        if rd.messages:
            self._send(node, rd.messages)
        # 3. apply
        if rd.snapshot is not None:
            node.sm = StateMachine.restore(rd.snapshot.data)
            node.conf_state = rd.snapshot.metadata.conf_state
            if chk:
                chk.on_snapshot_restore(node.id, rd.snapshot.metadata.index,
                                        node.sm.digest)
        sm = node.sm
        if chk is None:
            # Throughput mode: no checks, no digest, conf changes still applied.
            for e in rd.committed_entries:
                sm.apply_fast(e)
                if e.type == EntryConfChange:
                    node.conf_state = raw.apply_conf_change(decode_conf_change(e.data))
        for e in (rd.committed_entries if chk is not None else ()):
            if e.index <= sm.applied:
                continue
            if e.index != sm.applied + 1 and chk:
                chk.fail(f"node {node.id} applies {e.index} after {sm.applied}")
            sm.apply(e)
            if e.type == EntryConfChange:
                cc = decode_conf_change(e.data)
                try:
                    before = node.conf_state
                    node.conf_state = raw.apply_conf_change(cc)
                    self._note_removed(before, node.conf_state)
                    self.log(f"node {node.id} applied {cc} -> {node.conf_state}")
                    if any(c.type in (ConfChangeType.AddNode, ConfChangeType.AddLearnerNode)
                           for c in cc.changes):
                        # A node added now may need a snapshot; the snapshot Storage hands
                        # out must include it (etcd forces a snapshot here too).
                        try:
                            st.create_snapshot(e.index, node.conf_state,
                                               sm.snapshot_data())
                        except ErrSnapOutOfDate:
                            pass
                except ConfChangeError as err:
                    self.stats["conf_errors"] += 1
                    self.log(f"node {node.id} conf change {cc} refused: {err}")
            if chk:
                chk.on_apply(node.id, e, sm.digest)
        # 4. reads
        for rs in rd.read_states:
            issued = node.issued_reads.pop(rs.request_ctx, None)
            if issued is not None:
                node.pending_reads[rs.request_ctx] = (issued, rs.index)
        if node.pending_reads:
            self._serve_reads(node)
        raw.advance()

    def _note_removed(self, before: ConfState, after: ConfState) -> None:
        """Like etcd's transport (IsIDRemoved), reject traffic from members that a
        committed configuration no longer contains at all.  Without this (and without
        check-quorum/pre-vote) a removed node that never learns of its removal keeps
        campaigning with ever higher terms and can block the cluster forever (thesis
        §4.2.3); seed 89021 of the 100k run showed exactly that."""
        def ids(cs):
            return set(cs.voters) | set(cs.learners) | set(cs.voters_outgoing)
        gone = ids(before) - ids(after)
        if gone - self.removed:
            self.log(f"removed from the cluster: {sorted(gone - self.removed)}")
            self.removed |= gone

    def _serve_reads(self, node: SimNode) -> None:
        sm = node.sm
        done = [c for c, (_, idx) in node.pending_reads.items() if idx <= sm.applied]
        for ctx in done:
            issued, idx = node.pending_reads.pop(ctx)
            self.stats["reads_served"] += 1
            if self.check:
                self.checker.on_read(node.id, ctx, issued, idx, sm.applied, sm.last_write)

    def _send(self, node: SimNode, msgs: list) -> None:
        rng = self.rng
        sc = self.sc
        for m in msgs:
            if m.type == MsgSnap:
                self.stats["snapshots_sent"] += 1
            payload = encode_message(m) if self.codec else m
            copies = 1
            if sc.dup and rng.random() < sc.dup:
                copies = 2
            for _ in range(copies):
                if sc.drop and rng.random() < sc.drop:
                    self.stats["dropped"] += 1
                    if m.type == MsgSnap:
                        node.raw.report_snapshot(m.to, failed=True)
                    continue
                delay = rng.randint(0, sc.max_delay) if sc.max_delay else 0
                heapq.heappush(self.queue, (self.now + delay, rng.random(), m.to, m.frm,
                                            node.incarnation, m.type, payload))

    def linked(self, frm: int, to: int) -> bool:
        g = self.groups
        if g is not None and g.get(frm, -1) != g.get(to, -2):
            return False
        return not self.cut or (frm, to) not in self.cut

    def deliver_due(self, limit: int = 100000) -> None:
        q = self.queue
        nodes = self.nodes
        n = 0
        while q and q[0][0] <= self.now and n < limit:
            _, _, to, frm, inc, mtype, payload = heapq.heappop(q)
            n += 1
            node = nodes.get(to)
            if node is None or node.raw is None or not self.linked(frm, to) or \
                    frm in self.removed:
                self.stats["dropped"] += 1
                if mtype == MsgSnap:
                    # The transport tells the sender a snapshot did not get through.
                    self._report_snapshot(frm, inc, to, True)
                continue
            m = decode_message(payload) if self.codec else payload
            self.stats["delivered"] += 1
            try:
                node.raw.step(m)
            except ProposalDropped:
                pass
            except Exception as e:  # ErrStepPeerNotFound for removed peers is fine
                if type(e).__name__ != "ErrStepPeerNotFound":
                    raise
            self.process_ready(node)
            if mtype == MsgSnap:
                self._report_snapshot(frm, inc, to, False)

    def _report_snapshot(self, frm: int, inc: int, to: int, failed: bool) -> None:
        src = self.nodes.get(frm)
        if src is not None and src.raw is not None and src.incarnation == inc:
            src.raw.report_snapshot(to, failed=failed)
            self.process_ready(src)

    def tick_all(self) -> None:
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.raw is not None:
                node.raw.tick()
                self.process_ready(node)

    # -- queries -----------------------------------------------------------------------

    def alive_nodes(self) -> list:
        return [self.nodes[i] for i in sorted(self.nodes) if self.nodes[i].raw is not None]

    def leader(self):
        """The alive leader with the highest term, if any."""
        best = None
        for node in self.alive_nodes():
            r = node.raw.raft
            if r.state == StateLeader and (best is None or r.term > best.raw.raft.term):
                best = node
        return best

    def members(self) -> list:
        """Ids in the configuration as the current leader (or any node) sees it."""
        ld = self.leader()
        src = ld if ld is not None else (self.alive_nodes() or [None])[0]
        if src is None:
            return []
        return sorted(src.raw.raft.trk.progress)

    # -- client actions ----------------------------------------------------------------

    def propose(self, node: SimNode, count: int = 1) -> None:
        datas = []
        for _ in range(count):
            self.write_seq += 1
            datas.append(b"w%d" % self.write_seq)
        self.stats["proposals"] += count
        try:
            if count == 1:
                node.raw.propose(datas[0])
            else:
                node.raw.propose_batch(datas)
        except ProposalDropped:
            self.stats["dropped_props"] += count
        self.process_ready(node)

    def read(self, node: SimNode) -> None:
        self.read_seq += 1
        ctx = b"r%d" % self.read_seq
        node.issued_reads[ctx] = self.checker.max_acked_write
        node.raw.read_index(ctx)
        self.process_ready(node)

    def random_conf_change(self) -> None:
        ld = self.leader()
        if ld is None:
            return
        r = ld.raw.raft
        cfg = r.trk.config
        if r.pending_conf_index > r.raft_log.applied:
            return
        voters = sorted(cfg.voters.incoming)
        learners = sorted(cfg.learners)
        rng = self.rng
        joint = cfg.voters.is_joint()
        if joint:
            if not cfg.auto_leave:
                cc = ConfChange()  # leave explicitly
            else:
                return
        else:
            choice = rng.random()
            changes = []
            if choice < 0.3 and self.next_id <= self.sc.n + 3:
                nid = self.next_id
                self.next_id += 1
                self.nodes[nid] = self.node_class(nid)
                self.start(self.nodes[nid])
                kind = ConfChangeType.AddLearnerNode if rng.random() < 0.5 \
                    else ConfChangeType.AddNode
                changes.append(ConfChangeSingle(kind, nid))
            elif choice < 0.5 and learners:
                changes.append(ConfChangeSingle(ConfChangeType.AddNode, rng.choice(learners)))
            elif choice < 0.7 and len(voters) > 3:
                victim = rng.choice(voters)
                kind = ConfChangeType.AddLearnerNode if rng.random() < 0.5 \
                    else ConfChangeType.RemoveNode
                changes.append(ConfChangeSingle(kind, victim))
            elif len(voters) >= 3 and (learners or self.next_id <= self.sc.n + 3):
                # A joint change: swap a voter for a learner/new node in one step.
                if learners:
                    nid = rng.choice(learners)
                else:
                    nid = self.next_id
                    self.next_id += 1
                    self.nodes[nid] = self.node_class(nid)
                    self.start(self.nodes[nid])
                victim = rng.choice([v for v in voters if v != ld.id] or voters)
                changes.append(ConfChangeSingle(ConfChangeType.AddNode, nid))
                changes.append(ConfChangeSingle(
                    ConfChangeType.RemoveNode if rng.random() < 0.5
                    else ConfChangeType.AddLearnerNode, victim))
            else:
                return
            transition = ConfChangeTransition.Auto
            if len(changes) > 1 and rng.random() < 0.3:
                transition = ConfChangeTransition.JointExplicit
            cc = ConfChange(changes, transition)
        self.stats["conf_changes"] += 1
        self.log(f"propose conf change {cc} at leader {ld.id}")
        try:
            ld.raw.propose_conf_change(cc)
        except ProposalDropped:
            pass
        self.process_ready(ld)

    def compact(self, node: SimNode) -> None:
        st = node.storage
        sm = node.sm
        i = sm.applied
        if i - st.first_index() < 4:
            return
        try:
            st.create_snapshot(i, node.conf_state, sm.snapshot_data())
        except ErrSnapOutOfDate:
            return
        keep = self.rng.randint(0, 5)
        try:
            st.compact(max(i - keep, st.first_index()))
        except ErrCompacted:
            pass
        self.stats["compactions"] += 1

    # -- faults ------------------------------------------------------------------------

    def random_partition(self) -> None:
        ids = sorted(self.nodes)
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            # Split into two groups; often isolate the leader.
            ld = self.leader()
            if ld is not None and rng.random() < 0.5:
                self.groups = {i: (0 if i == ld.id else 1) for i in ids}
            else:
                self.groups = {i: rng.randint(0, 1) for i in ids}
            self.log(f"partition {self.groups}")
        elif kind < 0.6 and len(ids) > 1:
            a, b = rng.sample(ids, 2)
            self.cut.add((a, b))
            self.log(f"cut link {a}->{b}")
        else:
            self.heal()

    def heal(self) -> None:
        self.groups = None
        self.cut = set()
        self.log("heal")

    # -- phases ------------------------------------------------------------------------

    def chaos_tick(self) -> None:
        sc = self.sc
        rng = self.rng
        if sc.partition_rate and rng.random() < sc.partition_rate:
            self.random_partition()
        if sc.crash_rate and rng.random() < sc.crash_rate:
            node = self.nodes[rng.choice(sorted(self.nodes))]
            if node.raw is not None:
                self.crash(node)
            else:
                self.start(node)
        for node in self.alive_nodes():
            if node.raw is None:
                continue
            if rng.random() < sc.crash_rate * 0.3:
                self.crash(node)
                continue
        dead = [n for n in self.nodes.values() if n.raw is None]
        for node in dead:
            if rng.random() < 0.1:
                self.start(node)
        alive = self.alive_nodes()
        if alive:
            if rng.random() < sc.propose_rate:
                self.propose(rng.choice(alive), rng.choice((1, 1, 1, 3)))
            if rng.random() < sc.read_rate:
                self.read(rng.choice(alive))
            if sc.compact_rate and rng.random() < sc.compact_rate:
                self.compact(rng.choice(alive))
        if sc.conf_rate and rng.random() < sc.conf_rate:
            self.random_conf_change()
        if sc.transfer_rate and rng.random() < sc.transfer_rate:
            ld = self.leader()
            if ld is not None:
                target = rng.choice(sorted(ld.raw.raft.trk.config.voters.incoming))
                self.stats["transfers"] += 1
                self.log(f"transfer leader {ld.id} -> {target}")
                ld.raw.transfer_leader(target)
                self.process_ready(ld)
        self.step_time()

    def step_time(self) -> None:
        self.tick_all()
        self.deliver_due()
        self.now += 1
        for node in self.alive_nodes():
            t = node.raw.raft.term
            if t > self.stats["max_term"]:
                self.stats["max_term"] = t

    def heal_all(self) -> None:
        self.heal()
        for node in self.nodes.values():
            if node.raw is None:
                self.start(node)

    def wait_for(self, pred, max_ticks: int) -> int | None:
        for t in range(max_ticks + 1):
            if pred():
                return t
            self.step_time()
        return None

    def converge(self, max_ticks: int) -> tuple[int, int]:
        """Healed network, no faults: return (ticks to a stable leader, ticks until a
        fresh write is applied by every member).  Raises LivenessFailure on timeout."""
        sc = self.sc
        saved = (sc.drop, sc.dup)
        sc.drop = sc.dup = 0.0
        start = self.now

        def has_leader():
            ld = self.leader()
            if ld is None:
                return False
            # Every alive member agrees on it.
            r = ld.raw.raft
            return all(self.nodes[i].raw.raft.lead == ld.id for i in r.trk.progress
                       if i in self.nodes and self.nodes[i].raw is not None)

        t_lead = self.wait_for(has_leader, max_ticks)
        if t_lead is None:
            raise LivenessFailure(f"no stable leader within {max_ticks} ticks after heal")
        marker = None
        deadline = start + max_ticks * 2

        while self.now <= deadline:
            ld = self.leader()
            if ld is not None and marker is None:
                self.write_seq += 1
                marker = b"w%d" % self.write_seq
                try:
                    ld.raw.propose(marker)
                    self.process_ready(ld)
                except ProposalDropped:
                    marker = None
            if marker is not None and ld is not None:
                # Find the marker's index in the leader log, then wait for all members.
                members = sorted(ld.raw.raft.trk.progress)
                idx = self._find(ld, marker)
                if idx is None:
                    marker = None  # lost with a leadership change; propose again
                elif all(i in self.nodes and self.nodes[i].raw is not None and
                         self.nodes[i].sm.applied >= idx for i in members):
                    sc.drop, sc.dup = saved
                    return t_lead, self.now - start
            self.step_time()
        raise LivenessFailure(f"write not applied by all members within {max_ticks * 2} "
                              "ticks after heal")

    def check_final_agreement(self) -> None:
        """After convergence every member's state machine equals the reference state at
        its applied index, and the leader's log still holds every committed entry."""
        chk = self.checker
        ld = self.leader()
        for i in sorted(ld.raw.raft.trk.progress):
            node = self.nodes.get(i)
            if node is None or node.raw is None:
                continue
            want = chk.ref_digest.get(node.sm.applied)
            if want is not None and want != node.sm.digest:
                chk.fail(f"final state of node {i} at index {node.sm.applied} differs")
        log = ld.raw.raft.raft_log
        ref = chk.ref_terms
        for idx in range(max(1, log.first_index()), min(len(ref), log.last_index() + 1)):
            if log.term(idx) != ref[idx]:
                chk.fail(f"committed entry lost: final leader {ld.id} has term "
                         f"{log.term(idx)} at committed index {idx} (want {ref[idx]})")

    def dump(self) -> str:
        lines = []
        for nid in sorted(self.nodes):
            node = self.nodes[nid]
            if node.raw is None:
                lines.append(f"    node {nid}: down")
                continue
            r = node.raw.raft
            log = r.raft_log
            s = (f"    node {nid}: {r.state.name if hasattr(r.state, 'name') else r.state} "
                 f"term={r.term} vote={r.vote} lead={r.lead} commit={log.committed} "
                 f"applied={log.applied} first={log.first_index()} last={log.last_index()}"
                 f" lastterm={log.last_term()} cfg={r.trk.config!r}")
            if r.state == StateLeader:
                s += "".join(f"\n        {i}: {pr!r}" for i, pr in r.trk.progress.items())
            lines.append(s)
        return "\n".join(lines)

    @staticmethod
    def _find(node: SimNode, data: bytes):
        log = node.raw.raft.raft_log
        lo = max(log.first_index(), log.last_index() - 64)
        for e in reversed(log.slice(lo, log.last_index() + 1)):
            if e.data == data:
                return e.index
        return None


def run_seed(seed: int, *, trace=None, bug_send_before_persist: bool = False,
             chaos_ticks: int = 150, heal_ticks: int = 400) -> dict:
    """Run one seeded scenario; raises SafetyViolation / LivenessFailure with the seed."""
    sc = Scenario(seed, chaos_ticks, heal_ticks)
    cl = None
    try:
        cl = Cluster(sc, trace=trace, bug_send_before_persist=bug_send_before_persist)
        for _ in range(sc.chaos_ticks):
            cl.chaos_tick()
        cl.heal_all()
        t_lead, t_commit = cl.converge(sc.heal_ticks)
        cl.check_final_agreement()
    except (SafetyViolation, LivenessFailure, AssertionError) as e:
        at = f" at tick {cl.now}\n{cl.dump()}" if cl is not None else ""
        raise type(e)(f"{e}{at}\n  scenario: {sc.describe()}\n  replay: python -m "
                      f"tests.sim.replay --seed {seed} -v") from e
    out = dict(cl.stats)
    out.update(seed=seed, n=sc.n, t_lead=t_lead, t_commit=t_commit)
    return out
