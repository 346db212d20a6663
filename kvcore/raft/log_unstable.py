"""The unstable part of the log: entries and a snapshot not yet handed to storage.

Invariants:
* ``entries[i]`` has index ``offset + i``.
* If ``snapshot`` is set, ``offset == snapshot.metadata.index + 1`` when it was restored,
  and the entries follow the snapshot.
* Entries become stable (are removed) once the driver persisted them and called
  ``advance``; a stale ``stable_to`` (term mismatch, already truncated) is ignored.
"""
from __future__ import annotations

from .types import Snapshot


class Unstable:
    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list = []
        self.offset = offset

    def maybe_first_index(self):
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self):
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int):
        if i < self.offset:
            s = self.snapshot
            if s is not None and s.metadata.index == i:
                return s.metadata.term
            return None
        j = i - self.offset
        if j < len(self.entries):
            return self.entries[j].term
        return None

    def stable_to(self, i: int, t: int) -> None:
        gt = self.maybe_term(i)
        if gt is None:
            return
        # Only shrink if the entry is still the one we handed out (the term matches) and
        # it is an entry, not the snapshot's index.
        if gt == t and i >= self.offset:
            del self.entries[:i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, s: Snapshot) -> None:
        self.offset = s.metadata.index + 1
        self.entries = []
        self.snapshot = s

    def truncate_and_append(self, ents: list) -> None:
        after = ents[0].index
        n = self.offset + len(self.entries)
        if after == n:
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable; the caller made sure nothing committed moves.
            self.offset = after
            self.entries = list(ents)
        else:
            # Truncate to after-1 and append.
            del self.entries[after - self.offset:]
            self.entries.extend(ents)

    def slice(self, lo: int, hi: int) -> list:
        if lo > hi or lo < self.offset or hi > self.offset + len(self.entries):
            raise AssertionError(f"unstable.slice[{lo},{hi}) out of bound "
                                 f"[{self.offset},{self.offset + len(self.entries)}]")
        return self.entries[lo - self.offset:hi - self.offset]
