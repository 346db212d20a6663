"""Storage: the interface Raft reads its stable log through, and MemoryStorage.

Contract (same as etcd's ``Storage``):

* ``initial_state()`` -> (HardState, ConfState) saved at the last restart.
* ``entries(lo, hi, max_size)`` -> entries in ``[lo, hi)``, at least one entry if any is in
  range even when it exceeds ``max_size``.  Raises ``ErrCompacted`` if ``lo`` is at or
  below the snapshot index, ``ErrUnavailable`` if the log is empty past the snapshot.
  The returned list is a fresh list; the entries in it are shared and must not be mutated.
* ``term(i)`` -> term of entry ``i``; ``i`` may be the snapshot index (first_index()-1).
  Raises ``ErrCompacted`` below that and ``ErrUnavailable`` past the last index.
* ``first_index()`` / ``last_index()``: the log holds ``[first_index, last_index]``; an
  empty log has ``last_index == first_index - 1``.
* ``snapshot()`` -> the most recent snapshot (may raise
  ``ErrSnapshotTemporarilyUnavailable``).

MemoryStorage is both the storage Raft reads and, in tests and the simulator, the model of
what is durable: the driver appends to it exactly what it persisted from a Ready.
"""
from __future__ import annotations

from .errors import ErrCompacted, ErrSnapOutOfDate, ErrUnavailable
from .types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from .util import NO_LIMIT, limit_size


class MemoryStorage:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snap = Snapshot()
        # ents[0] is a dummy entry holding the snapshot's index and term.
        self.ents: list[Entry] = [Entry()]

    # -- read side (used by Raft) ------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state.copy(), self.snap.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list:
        ents = self.ents
        offset = ents[0].index
        if lo <= offset:
            raise ErrCompacted(lo)
        if hi > offset + len(ents):
            raise AssertionError(f"entries' hi({hi}) is out of bound lastindex"
                                 f"({self.last_index()})")
        if len(ents) == 1:
            raise ErrUnavailable(lo)
        return limit_size(ents[lo - offset:hi - offset], max_size)

    def term(self, i: int) -> int:
        ents = self.ents
        offset = ents[0].index
        if i < offset:
            raise ErrCompacted(i)
        if i - offset >= len(ents):
            raise ErrUnavailable(i)
        return ents[i - offset].term

    def last_index(self) -> int:
        return self.ents[0].index + len(self.ents) - 1

    def first_index(self) -> int:
        return self.ents[0].index + 1

    def snapshot(self) -> Snapshot:
        return self.snap

    # -- write side (used by the driver) -----------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs.copy()

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the log and state with a snapshot received from the leader."""
        if self.snap.metadata.index >= snap.metadata.index:
            raise ErrSnapOutOfDate(snap.metadata.index)
        self.snap = snap
        self.ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, i: int, cs: ConfState | None, data: bytes) -> Snapshot:
        """Make a snapshot of the state up to ``i`` (which the application has applied)."""
        if i <= self.snap.metadata.index:
            raise ErrSnapOutOfDate(i)
        offset = self.ents[0].index
        if i > self.last_index():
            raise AssertionError(f"snapshot {i} is out of bound lastindex"
                                 f"({self.last_index()})")
        if cs is None:
            cs = self.snap.metadata.conf_state
        self.snap = Snapshot(data, SnapshotMetadata(cs, i, self.ents[i - offset].term))
        return self.snap

    def index_keeping(self, hi: int, max_bytes: int) -> int:
        """The lowest ``i`` such that the entries (i, hi] hold at most ``max_bytes`` of
        data (``compact(i)`` then keeps no more than that behind ``hi``)."""
        ents = self.ents
        offset = ents[0].index
        total = 0
        i = min(hi, self.last_index())
        while i > offset:
            total += len(ents[i - offset].data)
            if total > max_bytes:
                return i
            i -= 1
        return offset

    def compact(self, compact_index: int) -> None:
        """Discard entries before ``compact_index``; it becomes the new dummy entry.
        The application must not compact past what it has applied (and snapshotted)."""
        offset = self.ents[0].index
        if compact_index <= offset:
            raise ErrCompacted(compact_index)
        if compact_index > self.last_index():
            raise AssertionError(f"compact {compact_index} is out of bound lastindex"
                                 f"({self.last_index()})")
        i = compact_index - offset
        head = self.ents[i]
        self.ents = [Entry(head.term, head.index)] + self.ents[i + 1:]

    def append(self, entries: list) -> None:
        """Append entries; entries that conflict with existing ones replace them (and
        everything after them)."""
        if not entries:
            return
        first = self.first_index()
        last = entries[0].index + len(entries) - 1
        if last < first:
            return  # all compacted already
        if first > entries[0].index:
            entries = entries[first - entries[0].index:]
        offset = entries[0].index - self.ents[0].index
        n = len(self.ents)
        if n > offset:
            self.ents = self.ents[:offset] + list(entries)
        elif n == offset:
            self.ents.extend(entries)
        else:
            raise AssertionError(f"missing log entry [last: {self.last_index()}, "
                                 f"append at: {entries[0].index}]")
