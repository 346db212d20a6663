"""What the driver simulator (driversim.py) checks beyond Raft safety (checkers.py),
each at the step that would break it: the driver's contract -- every term and vote a
message carries is fsynced and every entry it carries written (persist before send),
a leader counts toward its quorum only entries it wrote; linearizable reads (a
ReadIndex read reflects every index committed, and a local read every write
acknowledged, before it was issued); a confirmed leadership round holds off other
leaders for an election timeout; no acknowledged write lost across crashes.

Mixed into ``DriverCluster`` (drivercluster.py), whose state it reads; the checks
made while entries are staged and applied stay with the apply itself there.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kvcore.raft.types import Entry, MessageType, MsgApp, MsgVoteResp

if TYPE_CHECKING:
    from .drivercluster import DriverNode


class DriverContractChecks:
    """The checks of a ``DriverCluster``; ``self`` is the cluster."""

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

    def _check_persisted_before_send(self, node: DriverNode, m, dhs) -> None:
        """``m`` (not a pre-vote) leaves ``node`` only with what it carries on disk;
        ``dhs``: the node's durable hard state as the batch of messages left."""
        chk = self.checker
        disk = node.disk
        t = m.type
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

    def _serve(self, node: DriverNode, ctx: bytes, acked: int, committed: int) -> None:
        sm = node.sm
        self.stats["reads_served"] += 1
        self.log(f"read {ctx!r} served by node {node.id} at applied {sm.applied}")
        if sm.applied < committed:
            self.checker.fail(f"stale read: node {node.id} answered ReadIndex read {ctx!r} "
                              f"at applied index {sm.applied}; index {committed} was "
                              "committed before it was issued")
        self.checker.on_read(node.id, ctx, acked, -1, sm.applied, sm.last_write)

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

