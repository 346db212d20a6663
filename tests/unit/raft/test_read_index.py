"""ReadIndex linearizable reads (thesis §6.4, paper §8): the leader confirms it is still
leader with a quorum heartbeat round before answering with its commit index."""
from kvcore.raft import Config, Entry, Message, RawNode
from kvcore.raft.types import (MsgHeartbeat, MsgHeartbeatResp, MsgReadIndex,
                               MsgReadIndexResp, StateLeader)

from .harness import Network, new_raft, new_storage, read_messages


def read(nid, ctx):
    return Message(MsgReadIndex, frm=nid, to=nid, entries=[Entry(data=ctx)])


def test_leader_read_index_after_quorum_heartbeat():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.propose(1, b"x")
    lead = nt.peers[1]
    nt.send(read(1, b"ctx1"))
    assert [(rs.index, rs.request_ctx) for rs in lead.read_states] == [
        (lead.raft_log.committed, b"ctx1")]


def test_leader_does_not_answer_without_quorum_ack():
    r = new_raft(1)
    r.become_candidate()
    r.become_leader()
    r.raft_log.commit_to(1)        # the no-op of this term is committed
    read_messages(r)
    r.step(read(1, b"c"))
    hbs = read_messages(r)
    assert {m.type for m in hbs} == {MsgHeartbeat} and all(m.context == b"c" for m in hbs)
    assert not r.read_states        # only its own ack so far
    r.step(Message(MsgHeartbeatResp, frm=2, to=1, term=1, context=b"c"))
    assert [(rs.index, rs.request_ctx) for rs in r.read_states] == [(1, b"c")]


def test_follower_read_index_forwarded_to_leader():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.propose(1, b"x")
    nt.send(read(2, b"from-2"))
    f = nt.peers[2]
    assert [(rs.index, rs.request_ctx) for rs in f.read_states] == [
        (nt.peers[1].raft_log.committed, b"from-2")]


def test_follower_without_leader_drops_read():
    r = new_raft(2)
    r.step(read(2, b"c"))
    assert not r.read_states and not read_messages(r)


def test_single_node_read_index_is_immediate():
    st = new_storage([1])
    node = RawNode(Config(1, st, election_tick=10, heartbeat_tick=1))
    node.campaign()
    rd = node.ready()
    st.append(rd.entries)
    st.set_hard_state(rd.hard_state)
    node.advance()
    node.read_index(b"solo")
    rd = node.ready()
    assert [(rs.index, rs.request_ctx) for rs in rd.read_states] == [(1, b"solo")]


def test_read_waits_for_commit_in_current_term():
    # A new leader does not know the true commit index until its no-op commits.
    r = new_raft(1)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    r.step(read(1, b"early"))
    assert not read_messages(r) and r.pending_read_index_messages
    from kvcore.raft.types import MsgAppResp
    r.step(Message(MsgAppResp, frm=2, to=1, term=1, index=1))   # no-op commits
    hbs = [m for m in read_messages(r) if m.type == MsgHeartbeat]
    assert hbs and all(m.context == b"early" for m in hbs)
    r.step(Message(MsgHeartbeatResp, frm=2, to=1, term=1, context=b"early"))
    assert [rs.request_ctx for rs in r.read_states] == [b"early"]


def test_deposed_leader_cannot_serve_reads():
    # A leader cut off from the majority never collects acks, so it never answers;
    # meanwhile the majority elects a new leader and commits new writes.
    nt = Network(None, None, None)
    nt.campaign(1)
    old = nt.peers[1]
    nt.isolate(1)
    nt.campaign(2)
    nt.propose(2, b"new write")
    nt.send(read(1, b"stale?"))
    assert old.state == StateLeader and not old.read_states


def test_reads_answered_in_order_by_later_ack():
    r = new_raft(1)
    r.become_candidate()
    r.become_leader()
    r.raft_log.commit_to(1)
    read_messages(r)
    for c in (b"a", b"b", b"c"):
        r.step(read(1, c))
    read_messages(r)
    # An ack for the last request releases the ones queued before it too.
    r.step(Message(MsgHeartbeatResp, frm=3, to=1, term=1, context=b"c"))
    assert [rs.request_ctx for rs in r.read_states] == [b"a", b"b", b"c"]


def test_read_index_resp_to_follower():
    r = new_raft(1)
    r.become_candidate()
    r.become_leader()
    r.raft_log.commit_to(1)
    read_messages(r)
    r.step(Message(MsgReadIndex, frm=2, to=1, entries=[Entry(data=b"f")]))
    read_messages(r)
    r.step(Message(MsgHeartbeatResp, frm=3, to=1, term=1, context=b"f"))
    (m,) = [m for m in read_messages(r) if m.type == MsgReadIndexResp]
    assert (m.to, m.index, m.entries[0].data) == (2, 1, b"f")
