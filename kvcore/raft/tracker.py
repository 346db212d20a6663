"""ProgressTracker: the active configuration, the per-peer Progress, and votes."""
from __future__ import annotations

from .progress import Progress
from .quorum import JointConfig, VoteResult
from .types import ConfState


class Config:
    """Membership: voters (possibly joint), learners, and learners_next (voters of the
    outgoing config that become learners when the joint config is left)."""

    __slots__ = ("voters", "auto_leave", "learners", "learners_next")

    def __init__(self) -> None:
        self.voters = JointConfig()
        self.auto_leave = False
        self.learners: set = set()
        self.learners_next: set = set()

    def clone(self) -> "Config":
        c = Config()
        c.voters = self.voters.copy()
        c.auto_leave = self.auto_leave
        c.learners = set(self.learners)
        c.learners_next = set(self.learners_next)
        return c

    def __repr__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += f" learners={sorted(self.learners)}"
        if self.learners_next:
            s += f" learners_next={sorted(self.learners_next)}"
        if self.auto_leave:
            s += " autoleave"
        return s


class ProgressTracker:
    __slots__ = ("config", "progress", "votes", "max_inflight", "_ids")

    def __init__(self, max_inflight: int) -> None:
        self.config = Config()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self._ids: list | None = None

    def set(self, config: Config, progress: dict) -> None:
        self.config = config
        self.progress = progress
        self._ids = None

    def ids(self) -> list:
        """Sorted ids of every tracked peer (voters and learners), cached."""
        ids = self._ids
        if ids is None or len(ids) != len(self.progress):
            ids = self._ids = sorted(self.progress)
        return ids

    def conf_state(self) -> ConfState:
        c = self.config
        return ConfState(c.voters.incoming, c.learners, c.voters.outgoing,
                         c.learners_next, c.auto_leave)

    def is_singleton(self) -> bool:
        v = self.config.voters
        return len(v.incoming) == 1 and not v.outgoing

    def committed(self) -> int:
        return self.config.voters.committed_index(self.progress)

    def quorum_active(self) -> bool:
        votes = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(votes) == VoteResult.VoteWon

    def voter_nodes(self) -> list:
        return sorted(self.config.voters.ids())

    def learner_nodes(self) -> list:
        return sorted(self.config.learners)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, vid: int, granted: bool) -> None:
        if vid not in self.votes:
            self.votes[vid] = granted

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = rejected = 0
        for vid, pr in self.progress.items():
            if pr.is_learner:
                continue
            v = self.votes.get(vid)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)
