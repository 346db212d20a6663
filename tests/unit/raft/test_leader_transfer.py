"""Leadership transfer (thesis §3.10): the leader brings the transferee up to date, then
sends MsgTimeoutNow so it campaigns at once (bypassing pre-vote and the lease)."""
import pytest

from kvcore.raft import Message, ProposalDropped
from kvcore.raft.types import (MsgTimeoutNow, MsgTransferLeader, StateFollower,
                               StateLeader)

from .harness import ET, Network, prop, read_messages


def transfer(nt, lead, to):
    nt.send(Message(MsgTransferLeader, frm=to, to=lead))


@pytest.mark.parametrize("pre_vote,check_quorum", [(False, False), (True, True)])
def test_transfer_to_up_to_date_follower(pre_vote, check_quorum):
    nt = Network(None, None, None, pre_vote=pre_vote, check_quorum=check_quorum)
    nt.campaign(1)
    transfer(nt, 1, 2)
    assert nt.peers[2].state == StateLeader and nt.peers[1].state == StateFollower
    assert nt.peers[1].lead == 2


def test_transfer_to_lagging_follower_catches_it_up_first():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.isolate(3)
    nt.propose(1)
    nt.propose(1)
    nt.recover()
    lead = nt.peers[1]
    seen = []
    nt.msg_hook = lambda m: seen.append(m.type) or True
    transfer(nt, 1, 3)
    assert MsgTimeoutNow in seen
    assert nt.peers[3].state == StateLeader


def test_proposals_dropped_during_transfer_and_abort_after_timeout():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.isolate(3)
    transfer(nt, 1, 3)
    lead = nt.peers[1]
    assert lead.lead_transferee == 3
    with pytest.raises(ProposalDropped):
        lead.step(prop(1))
    for _ in range(ET):
        lead.tick()
    assert lead.lead_transferee == 0
    lead.step(prop(1))   # accepted again


def test_transfer_to_self_or_learner_is_ignored():
    nt = Network(None, None, None)
    nt.campaign(1)
    transfer(nt, 1, 1)
    assert nt.peers[1].state == StateLeader and nt.peers[1].lead_transferee == 0


def test_transfer_forwarded_by_follower():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.send(Message(MsgTransferLeader, frm=3, to=2))
    assert nt.peers[3].state == StateLeader


def test_timeout_now_ignored_by_non_follower_roles():
    nt = Network(None, None, None)
    nt.campaign(1)
    lead = nt.peers[1]
    lead.step(Message(MsgTimeoutNow, frm=2, to=1, term=lead.term))
    assert lead.state == StateLeader and lead.term == 1
