"""Transcript (interaction) tests in the style of etcd's rafttest/datadriven.

A ``testdata/*.txt`` file is a sequence of blocks::

    command arg arg key=value
    ----
    expected output

separated by blank lines (``#`` lines are comments).  Each command drives a small
cluster of RawNodes through the caller's contract (persist, send, apply, advance) and
prints what happened.  Run with ``KVCORE_REWRITE=1`` to regenerate the expected output,
then review the diff.

Commands: ``add-nodes N [prevote=true] [checkquorum=true]``, ``campaign ID``,
``propose ID DATA``, ``read-index ID CTX``, ``transfer-leader FROM TO``,
``tick-election ID``, ``tick-heartbeat ID``, ``isolate ID``, ``recover``,
``stabilize``, ``status``, ``raft-log ID``.
"""
from __future__ import annotations

import random

from kvcore.raft import Config, ConfState, MemoryStorage, ProposalDropped, RawNode
from kvcore.raft.codec import decode_conf_change
from kvcore.raft.types import EntryConfChange, MessageType, StateType

ET = 10


def fmt_ents(ents) -> str:
    out = []
    for e in ents:
        s = f"{e.term}/{e.index}"
        if e.type == EntryConfChange:
            s += f" conf{decode_conf_change(e.data).changes}"
        elif e.data:
            s += f" {e.data.decode(errors='replace')}"
        out.append(s)
    return "[" + ", ".join(out) + "]"


def fmt_msg(m) -> str:
    s = f"{m.frm}->{m.to} {MessageType(m.type).name} Term:{m.term}"
    if m.type in (MessageType.MsgApp, MessageType.MsgVote, MessageType.MsgPreVote):
        s += f" Log:{m.log_term}/{m.index}"
    if m.type in (MessageType.MsgApp, MessageType.MsgHeartbeat):
        s += f" Commit:{m.commit}"
    if m.type in (MessageType.MsgAppResp, MessageType.MsgReadIndexResp):
        s += f" Index:{m.index}"
    if m.entries:
        s += f" Entries:{fmt_ents(m.entries)}"
    if m.reject:
        s += f" Rejected (Hint: {m.reject_hint})"
    if m.context:
        s += f" Context:{m.context.decode(errors='replace')}"
    if m.snapshot is not None:
        s += f" Snapshot:{m.snapshot.metadata.index}/{m.snapshot.metadata.term}"
    return s


class Env:
    def __init__(self) -> None:
        self.nodes: dict[int, RawNode] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.queue: list = []
        self.isolated: set = set()
        self.out: list = []

    def p(self, line: str) -> None:
        self.out.append(line)

    # -- commands ----------------------------------------------------------------------

    def cmd_add_nodes(self, n, prevote="false", checkquorum="false"):
        ids = list(range(1, int(n) + 1))
        for i in ids:
            st = MemoryStorage()
            st.snap.metadata.conf_state = ConfState(ids)
            self.storage[i] = st
            self.nodes[i] = RawNode(Config(i, st, election_tick=ET, heartbeat_tick=1,
                                           pre_vote=prevote == "true",
                                           check_quorum=checkquorum == "true",
                                           rng=random.Random(i)))
        self.p(f"added {ids}")

    def cmd_campaign(self, nid):
        self.nodes[int(nid)].campaign()
        self.p("ok")

    def cmd_propose(self, nid, data):
        try:
            self.nodes[int(nid)].propose(data.encode())
            self.p("ok")
        except ProposalDropped as e:
            self.p(f"ProposalDropped: {e}")

    def cmd_read_index(self, nid, ctx):
        self.nodes[int(nid)].read_index(ctx.encode())
        self.p("ok")

    def cmd_transfer_leader(self, frm, to):
        self.nodes[int(frm)].transfer_leader(int(to))
        self.p("ok")

    def cmd_tick_election(self, nid):
        n = self.nodes[int(nid)]
        for _ in range(n.raft.randomized_election_timeout):
            n.tick()
        self.p("ok")

    def cmd_tick_heartbeat(self, nid):
        n = self.nodes[int(nid)]
        for _ in range(n.raft.heartbeat_timeout):
            n.tick()
        self.p("ok")

    def cmd_isolate(self, nid):
        self.isolated.add(int(nid))
        self.p("ok")

    def cmd_recover(self):
        self.isolated = set()
        self.p("ok")

    def cmd_stabilize(self):
        for _ in range(1000):
            progressed = False
            for i in sorted(self.nodes):
                if self.nodes[i].has_ready():
                    self.handle_ready(i)
                    progressed = True
            if self.queue:
                q, self.queue = self.queue, []
                for m in q:
                    if m.frm in self.isolated or m.to in self.isolated:
                        self.p(f"  dropped: {fmt_msg(m)}")
                        continue
                    try:
                        self.nodes[m.to].step(m)
                    except ProposalDropped:
                        pass
                progressed = True
            if not progressed:
                return
        raise AssertionError("stabilize did not converge")

    def cmd_status(self):
        for i in sorted(self.nodes):
            r = self.nodes[i].raft
            self.p(f"{i}: {StateType(r.state).name} term={r.term} lead={r.lead} "
                   f"commit={r.raft_log.committed} applied={r.raft_log.applied}")

    def cmd_raft_log(self, nid):
        r = self.nodes[int(nid)].raft
        self.p(fmt_ents(r.raft_log.all_entries()))

    # -- the driver --------------------------------------------------------------------

    def handle_ready(self, i: int) -> None:
        node, st = self.nodes[i], self.storage[i]
        rd = node.ready()
        self.p(f"> {i} handling Ready")
        if rd.soft_state is not None:
            self.p(f"  Lead:{rd.soft_state.lead} State:"
                   f"{StateType(rd.soft_state.raft_state).name}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            self.p(f"  HardState Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}")
            st.set_hard_state(hs)
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.p(f"  Entries: {fmt_ents(rd.entries)}")
            st.append(rd.entries)
        for m in rd.messages:
            self.p(f"  send {fmt_msg(m)}")
            self.queue.append(m)
        if rd.committed_entries:
            self.p(f"  Committed: {fmt_ents(rd.committed_entries)}")
            for e in rd.committed_entries:
                if e.type == EntryConfChange:
                    node.apply_conf_change(decode_conf_change(e.data))
        for rs in rd.read_states:
            self.p(f"  ReadState index={rs.index} ctx={rs.request_ctx.decode()}")
        node.advance()


def parse(text: str) -> list:
    """Blocks of (comment lines, command, expected output)."""
    blocks, lines = [], text.splitlines()
    i = 0
    comments: list = []
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        if line.startswith("#"):
            comments.append(lines[i])
            i += 1
            continue
        cmd = line
        assert lines[i + 1].strip() == "----", f"expected ---- after {cmd!r}"
        i += 2
        out = []
        while i < len(lines) and lines[i].strip() != "":
            out.append(lines[i])
            i += 1
        blocks.append((comments, cmd, "\n".join(out)))
        comments = []
    return blocks


def run_command(env: Env, cmd: str) -> str:
    env.out = []
    words = cmd.split()
    args = [w for w in words[1:] if "=" not in w]
    kw = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    getattr(env, "cmd_" + words[0].replace("-", "_"))(*args, **kw)
    return "\n".join(env.out)


def render(blocks: list) -> str:
    return "\n\n".join("".join(c + "\n" for c in cm) + f"{cmd}\n----\n{o}"
                       for cm, cmd, o in blocks) + "\n"
