"""RaftLog: the stable storage plus the unstable tail, seen as one log.

    snapshot/first.....applied....committed....stable last....unstable last
    [  storage (durable)                      ][  unstable (not yet persisted) ]

Invariants: ``applied <= committed <= last_index()``; ``committed`` never decreases;
entries at or below ``committed`` are never truncated (a conflicting append below the
commit index is a safety violation and raises).
"""
from __future__ import annotations

from .errors import ErrCompacted, ErrUnavailable
from .log_unstable import Unstable
from .types import Snapshot
from .util import NO_LIMIT, limit_size


class RaftLog:
    __slots__ = ("storage", "unstable", "committed", "applied", "max_next_ents_size")

    def __init__(self, storage, max_next_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        self.max_next_ents_size = max_next_ents_size
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Initialise committed and applied to the snapshot index (first - 1).
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, "
                f"len(unstable)={len(self.unstable.entries)})")

    # -- append / conflict --------------------------------------------------------------

    def maybe_append(self, index: int, log_term: int, committed: int, ents: list):
        """Follower side of AppendEntries: returns (last new index, True) if the entry at
        ``index`` has ``log_term``, else (0, False)."""
        if not self.match_term(index, log_term):
            return 0, False
        lastnewi = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflict with committed entry "
                                     f"[committed({self.committed})]")
            self.append(ents[ci - index - 1:])
        self.commit_to(min(committed, lastnewi))
        return lastnewi, True

    def append(self, ents: list) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range "
                                 f"[committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list) -> int:
        """Index of the first entry whose term differs from ours (or that we do not
        have), or 0 if all entries are already in the log."""
        last = self.last_index()
        for e in ents:
            if e.index > last:
                return e.index
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest index <= ``index`` whose term is <= ``term``, with that term (0 when
        unknown).  Used for the fast back-off in both directions."""
        while index > 0:
            try:
                our = self.term(index)
            except (ErrCompacted, ErrUnavailable):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # -- indices and terms -------------------------------------------------------------

    def first_index(self) -> int:
        s = self.unstable.snapshot
        if s is not None:
            return s.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, i: int) -> int:
        """Term of entry ``i``; 0 if ``i`` is outside [first_index-1, last_index].
        Raises ErrCompacted/ErrUnavailable from storage."""
        u = self.unstable
        # Fast path: the unstable tail.
        j = i - u.offset
        if 0 <= j < len(u.entries):
            return u.entries[j].term
        dummy = self.first_index() - 1
        if i < dummy or i > self.last_index():
            return 0
        t = u.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def zero_term_on_compacted(self, i: int) -> int:
        try:
            return self.term(i)
        except ErrCompacted:
            return 0

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (ErrCompacted, ErrUnavailable):
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up-to-date as ours."""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    # -- commit / apply ----------------------------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise AssertionError(f"tocommit({tocommit}) is out of range "
                                     f"[last_index({self.last_index()})]")
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """§5.4.2: only an entry of the current term is committed by counting replicas."""
        if max_index > self.committed and self.zero_term_on_compacted(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(f"applied({i}) is out of range [prev_applied("
                                 f"{self.applied}), committed({self.committed})]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def has_next_ents(self) -> bool:
        if self.committed <= self.applied:
            return False
        off = max(self.applied + 1, self.first_index())
        return self.committed + 1 > off

    def next_ents(self) -> list:
        """Committed entries not yet applied (bounded by max_next_ents_size)."""
        if self.committed <= self.applied:
            return []
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    # -- reading -----------------------------------------------------------------------

    def unstable_entries(self) -> list:
        return list(self.unstable.entries)

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list:
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list:
        try:
            return self.entries(self.first_index())
        except ErrCompacted:  # racing compaction; retry
            return self.all_entries()

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, s: Snapshot) -> None:
        self.committed = s.metadata.index
        self.unstable.restore(s)

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list:
        """Entries in [lo, hi), limited by max_size (at least one).  Raises ErrCompacted
        if lo is below the first index."""
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise ErrCompacted(lo)
        if hi > self.last_index() + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]")
        if lo == hi:
            return []
        u = self.unstable
        uoff = u.offset
        if lo >= uoff:
            ents = u.entries[lo - uoff:hi - uoff]
            return limit_size(ents, max_size) if max_size < NO_LIMIT else ents
        try:
            stored = self.storage.entries(lo, min(hi, uoff), max_size)
        except ErrUnavailable:
            raise AssertionError(f"entries[{lo}:{min(hi, uoff)}) is unavailable from "
                                 "storage")
        if len(stored) < min(hi, uoff) - lo:
            return stored  # limited by size
        if hi > uoff:
            stored = stored + u.entries[0:hi - uoff]
        return limit_size(stored, max_size) if max_size < NO_LIMIT else stored
