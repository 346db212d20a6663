"""The simulated disk of the driver simulator (driversim.py): the driver's ``store``
for one member, as write records kept across its crashes. A synced write completes
after a seeded delay (or on the caller's turn, when the driver offers an inline
write); a crash keeps what a completed fsync covered and, sometimes, a prefix of the
writes after it (a page cache written back in order). It also checks the driver
never starts a write before the last one completed.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from kvcore.raft import HardState

if TYPE_CHECKING:
    from .drivercluster import DriverCluster, DriverNode

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

