"""Leader election, after the Raft paper §5.1-§5.2 (and etcd's raft_paper_test.go)."""
import pytest

from kvcore.raft import Message, RawNode, Config
from kvcore.raft.types import (MsgApp, MsgHeartbeat, MsgVote, MsgVoteResp, StateCandidate,
                               StateFollower, StateLeader)

from .harness import ET, Network, ents, hup, new_raft, new_storage, persist, read_messages


# Reference: section 5.1
# Current terms are exchanged whenever servers communicate; if one server's current term
# is smaller than the other's, it updates its term to the larger value. If a candidate or
# leader discovers that its term is out of date, it immediately reverts to follower.
@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_update_term_from_message(role):
    r = new_raft(1)
    if role == "candidate":
        r.become_candidate()
    elif role == "leader":
        r.become_candidate()
        r.become_leader()
    r.step(Message(MsgApp, frm=2, to=1, term=2))
    assert r.term == 2
    assert r.state == StateFollower


# Reference: section 5.1
# If a server receives a request with a stale term number, it rejects the request.
def test_reject_stale_term_message():
    r = new_raft(1)
    r.load_state(type(r.hard_state())(term=2))
    called = []
    r.step_fn = lambda rr, m: called.append(m)
    r.step(Message(MsgApp, frm=2, term=1))
    assert not called


# Reference: section 5.2
# When servers start up, they begin as followers.
def test_start_as_follower():
    assert new_raft(1).state == StateFollower


# Reference: section 5.2
# Leaders send periodic heartbeats to all followers to maintain their authority.
def test_leader_bcast_beat():
    hb = 1
    r = new_raft(1, heartbeat=hb)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    for _ in range(hb):
        r.tick()
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.to, m.type, m.term) for m in msgs] == [(2, MsgHeartbeat, 1),
                                                      (3, MsgHeartbeat, 1)]


# Reference: section 5.2
# If a follower receives no communication over the election timeout, it begins an
# election: it increments its term, votes for itself, and sends RequestVote to all.
# A candidate that times out starts a new election (term + 1) the same way.
@pytest.mark.parametrize("start_state", [StateFollower, StateCandidate])
def test_nonleader_start_election(start_state):
    r = new_raft(1)
    if start_state == StateCandidate:
        r.become_candidate()
    term = r.term
    for _ in range(2 * ET):
        r.tick()
    assert r.term == term + 1
    assert r.state == StateCandidate
    assert r.trk.votes == {1: True}
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.to, m.type, m.term) for m in msgs if m.type == MsgVote][-2:] == [
        (2, MsgVote, term + 1), (3, MsgVote, term + 1)]


# Reference: section 5.2
# A candidate wins an election if it receives votes from a majority of the servers in the
# full cluster for the same term; stays candidate while pending; a majority of rejections
# loses it (etcd: back to follower).
@pytest.mark.parametrize("size,votes,state", [
    (1, {}, StateLeader),
    (3, {2: True, 3: True}, StateLeader),
    (3, {2: True}, StateLeader),
    (5, {2: True, 3: True, 4: True, 5: True}, StateLeader),
    (5, {2: True, 3: True, 4: True}, StateLeader),
    (5, {2: True, 3: True}, StateLeader),
    (3, {2: False, 3: False}, StateFollower),
    (5, {2: False, 3: False, 4: False, 5: False}, StateFollower),
    (5, {2: True, 3: False, 4: False, 5: False}, StateFollower),
    (3, {}, StateCandidate),
    (5, {2: True}, StateCandidate),
    (5, {2: False, 3: False}, StateCandidate),
])
def test_leader_election_in_one_round_rpc(size, votes, state):
    ids = list(range(1, size + 1))
    r = new_raft(1, ids)
    hup(r)
    for nid, granted in votes.items():
        r.step(Message(MsgVoteResp, frm=nid, to=1, term=r.term, reject=not granted))
    assert r.state == state
    assert r.term == 1


# Reference: section 5.2
# Each server votes for at most one candidate in a given term, first-come-first-served.
@pytest.mark.parametrize("vote,nvote,wreject", [
    (0, 2, False), (0, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True),
])
def test_follower_vote(vote, nvote, wreject):
    r = new_raft(1)
    r.load_state(type(r.hard_state())(term=1, vote=vote))
    r.step(Message(MsgVote, frm=nvote, to=1, term=1))
    msgs = read_messages(r)
    assert [(m.frm, m.to, m.type, m.term, m.reject) for m in msgs] == [
        (1, nvote, MsgVoteResp, 1, wreject)]


# Reference: section 5.2
# While waiting for votes, if a candidate receives an AppendEntries RPC from another
# server claiming to be leader whose term is at least as large, it becomes follower.
@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term):
    r = new_raft(1)
    hup(r)
    assert r.state == StateCandidate
    r.step(Message(MsgApp, frm=2, to=1, term=term))
    assert r.state == StateFollower
    assert r.term == term


# Reference: section 5.2
# Election timeouts are chosen randomly from a fixed interval ([ET, 2ET) here).
@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_election_timeout_randomized(role):
    r = new_raft(1, seed=42)
    seen = set()
    for _ in range(50 * ET):
        term = r.term
        if role == "candidate":
            r.become_candidate()
        else:
            r.become_follower(term + 1, 0)
        t = 0
        while not read_messages(r):
            r.tick()
            t += 1
        seen.add(t)
    assert min(seen) >= ET and max(seen) < 2 * ET
    assert len(seen) >= ET - 1  # every value in the interval shows up


# Reference: section 5.2
# Randomized timeouts make it rare for two servers to time out at the same time.
def test_election_timeouts_rarely_conflict():
    conflicts = 0
    for trial in range(200):
        a = new_raft(1, seed=trial * 2)
        b = new_raft(2, seed=trial * 2 + 1)
        a.become_follower(a.term + 1, 0)
        b.become_follower(b.term + 1, 0)
        while True:
            a.tick()
            b.tick()
            ma, mb = read_messages(a), read_messages(b)
            if ma or mb:
                conflicts += bool(ma and mb)
                break
    assert conflicts / 200 < 0.3


# Reference: section 5.2 (Figure 2, "Persistent state on all servers")
# The vote is persisted (HardState) before the vote response goes out, and a restarted
# node does not vote twice in the same term.
def test_vote_is_persisted_and_survives_restart():
    st = new_storage([1, 2, 3])
    node = RawNode(Config(1, st, election_tick=ET, heartbeat_tick=1))
    node.step(Message(MsgVote, frm=2, to=1, term=5))
    rd = node.ready()
    assert rd.hard_state.term == 5 and rd.hard_state.vote == 2
    assert rd.must_sync
    st.set_hard_state(rd.hard_state)
    node.advance()
    restarted = RawNode(Config(1, st, election_tick=ET, heartbeat_tick=1))
    restarted.step(Message(MsgVote, frm=3, to=1, term=5))
    resp = restarted.ready().messages
    assert [(m.to, m.reject) for m in resp] == [(3, True)]


# Reference: section 5.2
# A single-node cluster elects itself at once.
def test_single_node_campaign():
    r = new_raft(1, [1])
    hup(r)
    assert r.state == StateLeader and r.term == 1


def test_election_in_three_node_network():
    nt = Network(None, None, None)
    nt.campaign(1)
    assert nt.peers[1].state == StateLeader
    assert all(nt.peers[i].state == StateFollower for i in (2, 3))
    assert all(nt.peers[i].lead == 1 for i in (1, 2, 3))


def test_election_with_one_node_down_and_split():
    nt = Network(None, None, None, None, None)
    nt.isolate(4)
    nt.isolate(5)
    nt.campaign(1)
    assert nt.peers[1].state == StateLeader  # 3 of 5
    nt2 = Network(None, None, None, None, None)
    nt2.isolate(3)
    nt2.isolate(4)
    nt2.isolate(5)
    nt2.campaign(1)
    assert nt2.peers[1].state == StateCandidate  # 2 of 5 is not a majority
