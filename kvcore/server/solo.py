"""Raft with a quorum of one: the single-member stand-in for kvcore.raft's RawNode.

It has RawNode's shape — propose, ready (hard state + entries to persist + entries
to apply), advance — so the core's driver loop is the one the Raft core plugs into.
An entry counts as committed only once persisted: the driver applies a Ready's
committed entries after its fdatasync returns (never acknowledging a write that a
crash could lose).
"""
from __future__ import annotations

from dataclasses import dataclass

from kvcore.storage.wal import HardState


@dataclass
class Ready:
    hard_state: HardState
    entries: list            # to persist: [(index, term, type, data)]
    committed: list          # to apply once persisted


class SoloNode:
    def __init__(self, node_id: int, state: HardState, last_index: int):
        self.id = node_id
        # A restart is a new election that the only voter wins at once.
        self.term = state.term + 1
        self.lead = node_id
        self.last_index = last_index
        self.commit = state.commit
        self._unstable: list = []
        # A new leader appends an empty entry of its term (Raft §8).
        self.propose([b""])

    def propose(self, datas: list) -> None:
        for d in datas:
            self.last_index += 1
            self._unstable.append((self.last_index, self.term, 0, d))

    def has_ready(self) -> bool:
        return bool(self._unstable)

    def ready(self) -> Ready:
        ents, self._unstable = self._unstable, []
        commit = ents[-1][0] if ents else self.commit
        return Ready(HardState(self.term, self.id, commit), ents, ents)

    def advance(self, rd: Ready) -> None:
        self.commit = rd.hard_state.commit
