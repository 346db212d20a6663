"""Quorum rules: majority configurations and joint (two-majority) configurations.

``committed_index`` answers "which index is acknowledged by a quorum"; ``vote_result``
answers "has this election been won, lost, or is it still pending".  A joint config
needs both halves (Raft §6: agreement requires majorities of both C_old and C_new).
"""
from __future__ import annotations

from enum import IntEnum

INF_INDEX = (1 << 64) - 1


class VoteResult(IntEnum):
    VotePending = 1
    VoteLost = 2
    VoteWon = 3


VotePending = VoteResult.VotePending
VoteLost = VoteResult.VoteLost
VoteWon = VoteResult.VoteWon


class MajorityConfig(set):
    """A set of voter ids decided by simple majority."""

    def committed_index(self, progress) -> int:
        """Highest index acked by a majority; ``progress`` maps id -> object with
        ``.match``.  An empty config returns INF_INDEX (it does not constrain a joint
        config)."""
        n = len(self)
        if n == 0:
            return INF_INDEX
        if n == 1:
            (vid,) = self
            pr = progress.get(vid)
            return pr.match if pr is not None else 0
        get = progress.get
        srt = []
        for vid in self:
            pr = get(vid)
            srt.append(pr.match if pr is not None else 0)
        srt.sort()
        return srt[n - (n // 2 + 1)]

    def vote_result(self, votes: dict) -> VoteResult:
        """``votes`` maps id -> bool (granted); missing ids have not voted."""
        n = len(self)
        if n == 0:
            return VoteWon  # an empty config wins every vote, by convention (joint halves)
        yes = missing = 0
        for vid in self:
            v = votes.get(vid)
            if v is None:
                missing += 1
            elif v:
                yes += 1
        q = n // 2 + 1
        if yes >= q:
            return VoteWon
        if yes + missing >= q:
            return VotePending
        return VoteLost

    def sorted_ids(self) -> list:
        return sorted(self)


class JointConfig:
    """Two majority configs; ``outgoing`` is empty unless in a joint configuration."""

    __slots__ = ("incoming", "outgoing")

    def __init__(self, incoming=(), outgoing=()) -> None:
        self.incoming = MajorityConfig(incoming)
        self.outgoing = MajorityConfig(outgoing)

    def copy(self) -> "JointConfig":
        return JointConfig(self.incoming, self.outgoing)

    def ids(self) -> set:
        return self.incoming | self.outgoing

    def is_joint(self) -> bool:
        return len(self.outgoing) > 0

    def committed_index(self, progress) -> int:
        i = self.incoming.committed_index(progress)
        if not self.outgoing:
            return i
        o = self.outgoing.committed_index(progress)
        return i if i < o else o

    def vote_result(self, votes: dict) -> VoteResult:
        r1 = self.incoming.vote_result(votes)
        if not self.outgoing:
            return r1
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if r1 == VoteLost or r2 == VoteLost:
            return VoteLost
        return VotePending

    def __repr__(self) -> str:
        s = str(sorted(self.incoming))
        if self.outgoing:
            s += "&&" + str(sorted(self.outgoing))
        return s
