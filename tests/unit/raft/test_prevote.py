"""Pre-vote (thesis §9.6): a node first asks whether it could win before disrupting the
cluster with a higher term."""
from kvcore.raft import HardState, Message
from kvcore.raft.types import (MsgPreVote, MsgPreVoteResp, MsgVote, StateCandidate,
                               StateFollower, StateLeader, StatePreCandidate)

from .harness import Network, ents, hup, new_raft, new_storage, read_messages


def test_prevote_does_not_bump_term():
    r = new_raft(1, pre_vote=True)
    hup(r)
    assert r.state == StatePreCandidate and r.term == 0 and r.vote == 0
    msgs = read_messages(r)
    assert {(m.type, m.term) for m in msgs} == {(MsgPreVote, 1)}


def test_prevote_then_vote_wins():
    nt = Network(None, None, None, pre_vote=True)
    nt.campaign(1)
    assert nt.peers[1].state == StateLeader and nt.peers[1].term == 1


def test_partitioned_node_with_prevote_does_not_disrupt_on_rejoin():
    nt = Network(None, None, None, pre_vote=True)
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1)        # node 3 misses this entry
    for _ in range(5):
        nt.campaign(3)   # pre-votes go nowhere; its term never grows
    assert nt.peers[3].term == 1 and nt.peers[3].state == StatePreCandidate
    nt.recover()
    nt.campaign(3)       # the others have a longer log: pre-vote refused
    assert nt.peers[1].state == StateLeader and nt.peers[1].term == 1


def test_without_prevote_rejoining_node_disrupts():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1)
    for _ in range(3):
        nt.campaign(3)
    assert nt.peers[3].term == 4
    nt.recover()
    nt.campaign(3)
    assert nt.peers[1].state == StateFollower  # the leader was deposed


def test_prevote_rejected_when_log_behind():
    st = new_storage([1, 2], ents=ents(1, 1), hs=HardState(term=1))
    r = new_raft(1, (1, 2), storage=st, pre_vote=True)
    r.step(Message(MsgPreVote, frm=2, to=1, term=2, index=1, log_term=1))
    (m,) = read_messages(r)
    assert m.type == MsgPreVoteResp and m.reject and m.term == 1
    assert r.term == 1  # a pre-vote never changes the voter's term


def test_prevote_granted_does_not_record_a_vote():
    r = new_raft(1, (1, 2, 3), pre_vote=True)
    r.step(Message(MsgPreVote, frm=2, to=1, term=1))
    r.step(Message(MsgPreVote, frm=3, to=1, term=1))
    assert [m.reject for m in read_messages(r)] == [False, False]
    assert r.vote == 0


def test_precandidate_loses_and_returns_to_follower():
    r = new_raft(1, pre_vote=True)
    r.load_state(HardState(term=1))
    hup(r)
    read_messages(r)
    # Voters reject with their own term (1), not the pre-vote's (2).
    r.step(Message(MsgPreVoteResp, frm=2, to=1, term=1, reject=True))
    r.step(Message(MsgPreVoteResp, frm=3, to=1, term=1, reject=True))
    assert r.state == StateFollower and r.term == 1


def test_precandidate_becomes_candidate_on_quorum():
    r = new_raft(1, pre_vote=True)
    hup(r)
    read_messages(r)
    r.step(Message(MsgPreVoteResp, frm=2, to=1, term=1))
    assert r.state == StateCandidate and r.term == 1
    assert {m.type for m in read_messages(r)} == {MsgVote}


def test_stale_prevote_is_answered_with_our_term():
    r = new_raft(1, pre_vote=True)
    r.load_state(HardState(term=5))
    r.step(Message(MsgPreVote, frm=2, to=1, term=3))
    (m,) = read_messages(r)
    assert m.type == MsgPreVoteResp and m.reject and m.term == 5
