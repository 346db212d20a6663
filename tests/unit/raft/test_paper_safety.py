"""Safety, after the Raft paper §5.4 (election restriction, committing entries from
previous terms) and §5.4.3 (the safety argument, exercised on Figure 8)."""
import pytest

from kvcore.raft import HardState, Message
from kvcore.raft.types import MsgApp, MsgAppResp, MsgVote, MsgVoteResp, StateFollower, StateLeader

from .harness import Network, ents, hup, log_terms, new_raft, new_storage, read_messages


# Reference: section 5.4.1
# The voter denies its vote if its own log is more up-to-date than the candidate's: the
# later last term wins; with equal last terms, the longer log wins.
@pytest.mark.parametrize("log,logterm,index,wreject", [
    # same last term
    ([1], 1, 1, False), ([1], 1, 2, False), ([1, 1], 1, 1, True),
    # candidate has a higher last term
    ([1], 2, 1, False), ([1], 2, 2, False), ([1, 1], 2, 1, False),
    # candidate has a lower last term
    ([2], 1, 1, True), ([2], 1, 2, True), ([2, 2], 1, 1, True), ([1, 2], 1, 1, True),
])
def test_voter(log, logterm, index, wreject):
    r = new_raft(1, (1, 2), storage=new_storage([1, 2], ents=ents(*log)))
    r.step(Message(MsgVote, frm=2, to=1, term=3, log_term=logterm, index=index))
    (m,) = read_messages(r)
    assert m.type == MsgVoteResp and m.reject == wreject


# Reference: section 5.4.2
# Raft never commits log entries from previous terms by counting replicas. Only entries
# from the leader's current term are committed that way; earlier ones are committed
# indirectly (Log Matching).
@pytest.mark.parametrize("index,wcommit", [
    (1, 0), (2, 0),   # previous-term entries replicated on a majority: not committed
    (3, 3),           # the current term's entry: commits 1..3 at once
])
def test_leader_only_commits_log_from_current_term(index, wcommit):
    st = new_storage([1, 2], ents=ents(1, 2), hs=HardState(term=2))
    r = new_raft(1, (1, 2), storage=st)
    r.become_candidate()   # term 3
    r.become_leader()      # appends the empty entry at index 3, term 3
    r.step(Message(MsgAppResp, frm=2, to=1, term=r.term, index=index))
    assert r.raft_log.committed == wcommit


# Reference: section 5.4.2, Figure 8
# S1 leads a new term (5) with an entry of term 2 at index 2 that is replicated on S1, S2,
# S3 -- a majority -- while S5 holds a term-3 entry at index 2.  S1 must NOT commit index
# 2 by counting replicas: S5 can still be elected (its last term 3 beats term 2) and
# overwrite index 2 everywhere (Figure 8 (d)).
def figure8_cluster():
    logs = {1: [1, 2], 2: [1, 2], 3: [1, 2], 4: [1], 5: [1, 3]}
    peers = [new_raft(i, (1, 2, 3, 4, 5),
                      storage=new_storage([1, 2, 3, 4, 5], ents=ents(*logs[i]),
                                          hs=HardState(term=4, commit=1)))
             for i in range(1, 6)]
    return Network(*peers)


def test_figure8_previous_term_entry_not_committed_by_count():
    nt = figure8_cluster()
    s1, s2, s5 = nt.peers[1], nt.peers[2], nt.peers[5]
    nt.isolate(5)
    nt.ignore(MsgApp)          # S1's appends (with its new-term entry) get lost
    nt.campaign(1)
    assert s1.state == StateLeader and s1.term == 5
    for i in (2, 3):           # S2, S3 acknowledge index 2 (term 2) only
        s1.step(Message(MsgAppResp, frm=i, to=1, term=5, index=2))
    assert s1.raft_log.committed == 1
    # Why: S5 can still win (S2, S3, S4 vote for it) and overwrite index 2.
    nt.recover()
    nt.isolate(1)
    nt.campaign(5)             # term 5: the others already voted for S1
    nt.campaign(5)             # term 6
    assert s5.state == StateLeader
    assert s2.raft_log.term(2) == 3


# Figure 8 (e): once an entry of S1's own term is on a majority, index 2 commits with it
# and S5 can no longer be elected.
def test_figure8_current_term_entry_commits_previous():
    nt = figure8_cluster()
    s1, s5 = nt.peers[1], nt.peers[5]
    nt.isolate(5)
    nt.campaign(1)
    assert s1.state == StateLeader
    assert s1.raft_log.committed == 3 and s1.raft_log.term(2) == 2
    nt.recover()
    nt.campaign(5)
    nt.campaign(5)
    assert s5.state != StateLeader
    assert nt.peers[2].raft_log.term(2) == 2


# Reference: section 5.4.3 (Leader Completeness)
# A candidate missing a committed entry cannot be elected: the voters that hold it refuse.
def test_candidate_missing_committed_entry_loses():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.cut(1, 3)
    nt.propose(1, b"committed on 1 and 2")
    assert nt.peers[1].raft_log.committed == 2
    nt.recover()
    nt.isolate(1)
    nt.campaign(3)
    assert nt.peers[3].state != StateLeader
    nt.campaign(2)
    assert nt.peers[2].state == StateLeader


# Reference: section 5.4 (log matching via a new leader overwriting uncommitted entries)
def test_new_leader_overwrites_uncommitted_entries_only():
    nt = Network(None, None, None)
    nt.campaign(1)
    nt.propose(1, b"committed")
    nt.isolate(1)
    nt.propose(1, b"uncommitted-1")
    nt.propose(1, b"uncommitted-2")
    nt.recover()
    nt.isolate(1)
    nt.campaign(2)
    nt.propose(2, b"new")
    nt.recover()
    nt.tick(2, 3)   # heartbeats get the leader probing S1 again
    nt.propose(2, b"after heal")
    datas = [e.data for e in nt.peers[1].raft_log.all_entries()]
    assert b"committed" in datas and b"uncommitted-1" not in datas
    assert log_terms(nt.peers[1]) == log_terms(nt.peers[2]) == log_terms(nt.peers[3])
    assert nt.peers[1].state == StateFollower


# Reference: section 5.4 (State Machine Safety): a conflicting append below the commit
# index means a committed entry would be lost; the log refuses it loudly.
def test_conflict_below_commit_is_refused():
    from kvcore.raft import Entry
    r = new_raft(1, storage=new_storage([1, 2, 3], ents=ents(1, 1), hs=HardState(1, 0, 2)))
    with pytest.raises(AssertionError):
        r.raft_log.maybe_append(0, 0, 2, [Entry(2, 1)])
