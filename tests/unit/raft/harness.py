"""Test helpers: build Raft nodes over MemoryStorage and a scripted in-memory network
(the shape of etcd's ``newNetwork``): ``send`` delivers messages depth-first until no
more are produced; ``drop``/``cut``/``isolate``/``ignore`` shape the traffic."""
from __future__ import annotations

import random

from kvcore.raft import Config, ConfState, Entry, HardState, MemoryStorage, Message, Raft
from kvcore.raft.errors import ProposalDropped
from kvcore.raft.types import MsgHup, MsgProp

ET = 10  # election tick
HT = 1   # heartbeat tick


def new_storage(voters=(), learners=(), ents=None, hs=None) -> MemoryStorage:
    st = MemoryStorage()
    st.snap.metadata.conf_state = ConfState(voters, learners)
    if ents:
        st.append(ents)
    if hs is not None:
        st.set_hard_state(hs)
    return st


def ents(*terms, start: int = 1) -> list:
    """Entries with the given terms at indexes start, start+1, ..."""
    return [Entry(t, start + i) for i, t in enumerate(terms)]


def new_raft(nid: int, peers=(1, 2, 3), *, learners=(), storage=None, election=ET,
             heartbeat=HT, seed: int | None = None, **kw) -> Raft:
    if storage is None:
        storage = new_storage(peers, learners)
    cfg = Config(nid, storage, election_tick=election, heartbeat_tick=heartbeat,
                 rng=random.Random(nid if seed is None else seed), **kw)
    return Raft(cfg)


def read_messages(r: Raft) -> list:
    msgs = r.msgs
    r.msgs = []
    return msgs


def persist(r: Raft) -> None:
    """Move the unstable log and state into storage (what the driver does)."""
    st = r.raft_log.storage
    u = r.raft_log.unstable
    if u.snapshot is not None:
        st.apply_snapshot(u.snapshot)
        r.raft_log.stable_snap_to(u.snapshot.metadata.index)
    if u.entries:
        e = u.entries[-1]
        st.append(list(u.entries))
        r.raft_log.stable_to(e.index, e.term)
    st.set_hard_state(r.hard_state())


def log_terms(r: Raft) -> list:
    """[(index, term)] of the whole log from the first index."""
    return [(e.index, e.term) for e in r.raft_log.all_entries()]


def hup(r: Raft) -> None:
    r.step(Message(MsgHup, frm=r.id))


def prop(to: int, data: bytes = b"somedata") -> Message:
    return Message(MsgProp, frm=to, to=to, entries=[Entry(data=data)])


class BlackHole:
    """A peer that swallows everything."""

    def step(self, m):
        pass


class Network:
    def __init__(self, *peers, pre_vote: bool = False, check_quorum: bool = False,
                 **kw) -> None:
        n = len(peers)
        ids = list(range(1, n + 1))
        self.peers: dict = {}
        self.storage: dict = {}
        for nid, p in zip(ids, peers):
            if p is None:
                st = new_storage(ids)
                self.storage[nid] = st
                self.peers[nid] = new_raft(nid, ids, storage=st, pre_vote=pre_vote,
                                           check_quorum=check_quorum, **kw)
            else:
                self.peers[nid] = p
        self.dropm: dict = {}     # (frm, to) -> drop fraction
        self.ignorem: set = set()  # message types to drop
        self.rng = random.Random(0)
        self.msg_hook = None

    def send(self, *msgs) -> None:
        q = list(msgs)
        budget = 100000
        while q:
            budget -= 1
            if budget < 0:
                raise AssertionError("network did not quiesce (livelock?)")
            m = q.pop(0)
            p = self.peers.get(m.to)
            if p is None:
                continue
            try:
                p.step(m)
            except ProposalDropped:
                pass
            if isinstance(p, Raft):
                q.extend(self.filter(read_messages(p)))

    def filter(self, msgs) -> list:
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            if m.type == MsgHup:
                raise AssertionError("unexpected MsgHup")
            perc = self.dropm.get((m.frm, m.to), 0.0)
            if perc and self.rng.random() < perc:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out

    def drop(self, frm: int, to: int, perc: float) -> None:
        self.dropm[(frm, to)] = perc

    def cut(self, a: int, b: int) -> None:
        self.drop(a, b, 2.0)
        self.drop(b, a, 2.0)

    def isolate(self, nid: int) -> None:
        for i in self.peers:
            if i != nid:
                self.cut(nid, i)

    def ignore(self, t) -> None:
        self.ignorem.add(t)

    def recover(self) -> None:
        self.dropm = {}
        self.ignorem = set()

    def campaign(self, nid: int) -> None:
        self.send(Message(MsgHup, frm=nid, to=nid))

    def tick(self, nid: int, n: int = 1) -> None:
        p = self.peers[nid]
        for _ in range(n):
            p.tick()
            self.send(*self.filter(read_messages(p)))

    def propose(self, nid: int, data: bytes = b"somedata") -> None:
        self.send(prop(nid, data))
