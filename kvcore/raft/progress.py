"""Per-follower replication progress as the leader sees it (etcd's tracker.Progress).

States:
* Probe: the leader does not know where the follower's log ends; it sends at most one
  append per heartbeat interval (``probe_sent``) and backs off on rejections.
* Replicate: the follower is known to be caught up to ``match``; the leader streams
  appends optimistically (``next`` advances on send) bounded by the in-flight window.
* Snapshot: a snapshot is on its way; nothing else is sent until it is reported done.

Invariant: ``match < next``.
"""
from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    Probe = 0
    Replicate = 1
    Snapshot = 2


StateProbe = ProgressState.Probe
StateReplicate = ProgressState.Replicate
StateSnapshot = ProgressState.Snapshot


class Inflights:
    """Bounded window of in-flight append messages, identified by their last index."""

    __slots__ = ("size", "buf")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf: deque = deque()

    def clone(self) -> "Inflights":
        c = Inflights(self.size)
        c.buf = deque(self.buf)
        return c

    def add(self, last_index: int) -> None:
        if len(self.buf) >= self.size:
            raise AssertionError("cannot add into a full inflights")
        self.buf.append(last_index)

    def free_le(self, to: int) -> None:
        buf = self.buf
        while buf and buf[0] <= to:
            buf.popleft()

    def free_first_one(self) -> None:
        if self.buf:
            self.buf.popleft()

    def full(self) -> bool:
        return len(self.buf) >= self.size

    def count(self) -> int:
        return len(self.buf)

    def reset(self) -> None:
        self.buf.clear()


class Progress:
    __slots__ = ("match", "next", "state", "pending_snapshot", "recent_active",
                 "probe_sent", "inflights", "is_learner")

    def __init__(self, match: int = 0, next: int = 1, inflights: Inflights | None = None,
                 is_learner: bool = False, recent_active: bool = False) -> None:
        self.match = match
        self.next = next
        self.state = StateProbe
        self.pending_snapshot = 0
        self.recent_active = recent_active
        self.probe_sent = False
        self.inflights = inflights if inflights is not None else Inflights(256)
        self.is_learner = is_learner

    def clone(self) -> "Progress":
        p = Progress(self.match, self.next, self.inflights.clone(), self.is_learner,
                     self.recent_active)
        p.state = self.state
        p.pending_snapshot = self.pending_snapshot
        p.probe_sent = self.probe_sent
        return p

    def reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == StateSnapshot:
            pending = self.pending_snapshot
            self.reset_state(StateProbe)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(StateProbe)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self.reset_state(StateReplicate)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self.reset_state(StateSnapshot)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """The follower acked up to ``n``; returns whether match moved."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def optimistic_update(self, n: int) -> None:
        self.next = n + 1

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append at ``rejected``; ``match_hint`` is the index
        the leader should probe next (fast back-off).  Returns False for stale rejects."""
        if self.state == StateReplicate:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        st = self.state
        if st == StateProbe:
            return self.probe_sent
        if st == StateReplicate:
            return len(self.inflights.buf) >= self.inflights.size
        return True

    def __repr__(self) -> str:
        s = f"{ProgressState(self.state).name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == StateSnapshot:
            s += f" pending_snap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
        return s
