"""Check-quorum and leader stickiness (thesis §6.2, §4.2.3)."""
from kvcore.raft import Message
from kvcore.raft.types import (MsgApp, MsgAppResp, MsgVote, StateCandidate, StateFollower,
                               StateLeader)

from .harness import ET, Network, new_raft, read_messages


def test_leader_steps_down_without_quorum():
    nt = Network(None, None, None, check_quorum=True)
    nt.campaign(1)
    lead = nt.peers[1]
    nt.isolate(1)
    # The first check after the election still sees the votes as activity; the second
    # finds nobody.
    for _ in range(2 * ET):
        nt.tick(1)
    assert lead.state == StateFollower


def test_leader_keeps_leading_with_quorum():
    nt = Network(None, None, None, check_quorum=True)
    nt.campaign(1)
    nt.isolate(3)
    for _ in range(3 * ET):
        nt.tick(1)
    assert nt.peers[1].state == StateLeader


def test_vote_ignored_within_lease():
    nt = Network(None, None, None, check_quorum=True)
    nt.campaign(1)
    f = nt.peers[2]
    f.step(Message(MsgVote, frm=3, to=2, term=5, index=10, log_term=5))
    assert f.term == 1 and not read_messages(f)


def test_vote_granted_after_lease_expires():
    nt = Network(None, None, None, check_quorum=True)
    nt.campaign(1)
    f = nt.peers[2]
    for _ in range(ET):
        f.tick()
    read_messages(f)
    f.step(Message(MsgVote, frm=3, to=2, term=5, index=10, log_term=5))
    assert f.term == 5 and f.vote == 3


def test_stale_leader_learns_new_term_from_app_resp():
    # A follower with a higher term answers a stale leader's append so the old leader
    # steps down rather than being ignored forever.
    r = new_raft(2, check_quorum=True)
    r.become_follower(5, 0)
    r.step(Message(MsgApp, frm=1, to=2, term=3))
    (m,) = read_messages(r)
    assert m.type == MsgAppResp and m.term == 5


def test_partitioned_candidate_cannot_disrupt_sticky_leader():
    nt = Network(None, None, None, check_quorum=True)
    nt.campaign(1)
    nt.isolate(3)
    for _ in range(4):
        nt.peers[3].become_follower(nt.peers[3].term, 0)
        nt.campaign(3)
    assert nt.peers[3].state == StateCandidate
    nt.recover()
    nt.campaign(3)
    assert nt.peers[1].state == StateLeader
