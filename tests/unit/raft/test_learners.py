"""Learners (non-voting members, thesis §4.2.1): they receive the log but neither vote,
campaign, nor count toward commitment."""
from kvcore.raft import ConfChange, ConfChangeSingle, Message
from kvcore.raft.types import (ConfChangeType, MsgAppResp, MsgVote, StateFollower,
                               StateLeader)

from .harness import ET, Network, hup, new_raft, new_storage, read_messages


def learner_network():
    peers = []
    for i in (1, 2, 3):
        peers.append(new_raft(i, (1, 2), learners=(3,),
                              storage=new_storage([1, 2], learners=[3])))
    return Network(*peers)


def test_learner_does_not_campaign():
    r = new_raft(3, (1, 2), learners=(3,), storage=new_storage([1, 2], learners=[3]))
    assert r.is_learner
    for _ in range(3 * ET):
        r.tick()
    hup(r)
    assert r.state == StateFollower and not read_messages(r)


def test_learner_receives_log_but_is_not_counted():
    nt = learner_network()
    nt.campaign(1)
    lead = nt.peers[1]
    assert lead.state == StateLeader
    nt.propose(1, b"x")
    assert nt.peers[3].raft_log.committed == lead.raft_log.committed
    # Commit needs the voter 2; learner 3 alone is not enough.
    nt.isolate(2)
    nt.propose(1, b"y")
    assert lead.raft_log.committed < lead.raft_log.last_index()


def test_candidate_does_not_ask_learners_for_votes():
    r = new_raft(1, (1, 2), learners=(3,), storage=new_storage([1, 2], learners=[3]))
    hup(r)
    assert sorted(m.to for m in read_messages(r) if m.type == MsgVote) == [2]


def test_promote_learner_to_voter():
    nt = learner_network()
    nt.campaign(1)
    for p in nt.peers.values():
        p.apply_conf_change(ConfChange([ConfChangeSingle(ConfChangeType.AddNode, 3)]))
    assert not nt.peers[3].is_learner
    nt.isolate(1)
    nt.campaign(3)
    assert nt.peers[3].state == StateLeader


def test_learner_vote_response_does_not_count():
    r = new_raft(1, (1, 2, 3), learners=(4,), storage=new_storage([1, 2, 3], learners=[4]))
    hup(r)
    read_messages(r)
    from kvcore.raft.types import MsgVoteResp
    r.step(Message(MsgVoteResp, frm=4, to=1, term=1))
    assert r.state != StateLeader
