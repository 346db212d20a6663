"""A follower whose leader's connection closed ends the leader's lease at once
(RaftDriver.leader_connection_closed): a killed leader's sockets close immediately, so
the survivors' election starts after the randomized part of the timeout only, not after
a whole silent election timeout first. It must never cost a term while the leader lives."""
import types

from kvcore.raft.types import (MsgHeartbeat, StateFollower, StateLeader, StatePreCandidate)
from kvcore.raft import Message
from kvcore.raftdriver.driver import RaftDriver

from ..raft.harness import ET, Network


def _closed(raft, pid):
    RaftDriver.leader_connection_closed(types.SimpleNamespace(node=types.SimpleNamespace(
        raft=raft)), pid)


def _cluster(pre_vote=True, check_quorum=True):
    nt = Network(None, None, None, pre_vote=pre_vote, check_quorum=check_quorum)
    nt.campaign(1)
    assert nt.peers[1].state == StateLeader
    return nt


def test_closed_leader_connection_ends_the_lease_and_the_follower_campaigns_early():
    nt = _cluster()
    f = nt.peers[2]
    assert f.lead == 1 and f.election_elapsed == 0
    _closed(f, 1)
    assert f.election_elapsed == ET
    # Its campaign now comes after the randomized part alone: fewer than ET ticks.
    ticks = 0
    while f.state == StateFollower and ticks < 2 * ET:
        f.tick()
        ticks += 1
    assert f.state == StatePreCandidate and ticks < ET, ticks


def test_other_peers_and_other_states_are_left_alone():
    nt = _cluster()
    f = nt.peers[2]
    _closed(f, 3)                 # not its leader
    assert f.election_elapsed == 0
    lead = nt.peers[1]
    before = lead.election_elapsed
    _closed(lead, 2)              # a leader never shortens its own lease
    assert lead.election_elapsed == before


def test_needs_pre_vote_and_check_quorum():
    for pv, cq in ((False, True), (True, False)):
        nt = _cluster(pre_vote=pv, check_quorum=cq)
        f = nt.peers[2]
        _closed(f, 1)
        assert f.election_elapsed == 0, (pv, cq)


def test_a_live_leader_loses_nothing():
    """The connection merely dropped: the next heartbeat resets the timer, and a
    member still in the leader's lease refuses the pre-vote, so no term is spent."""
    nt = _cluster()
    f = nt.peers[2]
    term = f.term
    _closed(f, 1)
    f.step(Message(MsgHeartbeat, frm=1, to=2, term=term, commit=0))
    assert f.election_elapsed == 0 and f.state == StateFollower
    _closed(f, 1)
    while f.state == StateFollower:
        f.tick()
    nt.send(*f.msgs)             # its pre-vote goes out; member 3 is in the lease
    f.msgs.clear()
    assert nt.peers[1].state == StateLeader and nt.peers[1].term == term
    assert nt.peers[3].term == term and f.term == term
