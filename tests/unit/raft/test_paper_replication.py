"""Log replication, after the Raft paper §5.3, plus flow control and forwarding."""
import pytest

from kvcore.raft import Entry, HardState, Message, ProposalDropped
from kvcore.raft.progress import StateProbe, StateReplicate
from kvcore.raft.types import (MsgApp, MsgAppResp, MsgHeartbeatResp, MsgProp,
                               StateFollower, StateLeader)

from .harness import (Network, ents, hup, log_terms, new_raft, new_storage, persist, prop,
                      read_messages)


def leader(peers=(1, 2, 3), **kw):
    r = new_raft(1, peers, **kw)
    r.become_candidate()
    r.become_leader()
    persist(r)
    read_messages(r)
    return r


def commit_noop(r):
    for i in r.trk.ids():
        if i != r.id:
            r.step(Message(MsgAppResp, frm=i, to=r.id, term=r.term, index=r.raft_log.last_index()))
    read_messages(r)


# Reference: section 5.3
# The leader appends the command to its log as a new entry, then issues AppendEntries
# RPCs in parallel to each of the other servers to replicate the entry.
def test_leader_start_replication():
    r = leader()
    commit_noop(r)
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.to, m.type, m.index, m.log_term, m.commit) for m in msgs] == [
        (2, MsgApp, li, 1, li), (3, MsgApp, li, 1, li)]
    assert [e.data for e in msgs[0].entries] == [b"some data"]
    assert [(e.index, e.term) for e in r.raft_log.unstable_entries()][-1] == (li + 1, 1)


# Reference: section 5.3
# When the entry has been safely replicated, the leader applies it; the leader keeps track
# of the highest index it knows to be committed and includes it in future AppendEntries.
def test_leader_commit_entry():
    r = leader()
    commit_noop(r)
    li = r.raft_log.last_index()
    r.step(prop(1))
    for m in read_messages(r):
        r.step(Message(MsgAppResp, frm=m.to, to=1, term=1, index=m.index + len(m.entries)))
    assert r.raft_log.committed == li + 1
    assert [e.data for e in r.raft_log.next_ents()][-1] == b"somedata"
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert all(m.type == MsgApp and m.commit == li + 1 for m in msgs)


# Reference: section 5.3
# A log entry is committed once the leader has replicated it on a majority of servers.
@pytest.mark.parametrize("size,acks,committed", [
    (1, set(), True), (3, set(), False), (3, {2}, True), (3, {2, 3}, True),
    (5, set(), False), (5, {2}, False), (5, {2, 3}, True), (5, {2, 3, 4, 5}, True),
])
def test_leader_acknowledge_commit(size, acks, committed):
    r = leader(tuple(range(1, size + 1)))
    commit_noop(r)
    li = r.raft_log.last_index()
    r.step(prop(1))
    for m in read_messages(r):
        if m.to in acks:
            r.step(Message(MsgAppResp, frm=m.to, to=1, term=1, index=m.index + len(m.entries)))
    assert (r.raft_log.committed > li) == committed


# Reference: section 5.3
# When the leader commits an entry it also commits all preceding entries, including
# entries created by previous leaders.
@pytest.mark.parametrize("prev", [[], [2], [1, 1], [1, 2]])
def test_leader_commit_preceding_entries(prev):
    st = new_storage([1, 2, 3], ents=ents(*prev), hs=HardState(term=2))
    r = new_raft(1, storage=st)
    r.become_candidate()
    r.become_leader()
    r.step(prop(1))
    for m in read_messages(r):
        r.step(Message(MsgAppResp, frm=m.to, to=1, term=3, index=m.index + len(m.entries)))
    li = len(prev)
    assert [(e.index, e.term) for e in r.raft_log.next_ents()] == \
        [(i + 1, t) for i, t in enumerate(prev)] + [(li + 1, 3), (li + 2, 3)]


# Reference: section 5.3
# Once a follower learns that a log entry is committed, it applies it (in log order).
@pytest.mark.parametrize("n", [1, 2])
def test_follower_commit_entry(n):
    r = new_raft(1)
    r.become_follower(1, 2)
    es = [Entry(1, i + 1, data=b"d%d" % i) for i in range(n)]
    r.step(Message(MsgApp, frm=2, to=1, term=1, index=0, log_term=0, entries=es, commit=n))
    assert r.raft_log.committed == n
    assert r.raft_log.next_ents() == es


# Reference: section 5.3
# If the follower does not find an entry with the same index and term as the one before
# the new entries, it refuses them; the rejection carries a hint for fast back-off.
@pytest.mark.parametrize("term,index,commit,wreject,whint,wlogterm,windex", [
    (0, 0, 1, False, 0, 0, 1),     # at/below commit: answer with our commit index
    (1, 1, 1, False, 0, 0, 1),
    (2, 2, 2, False, 0, 0, 2),     # match with an uncommitted entry
    (1, 2, 1, True, 1, 1, 2),      # term mismatch at 2: hint (1, term 1)
    (3, 3, 3, True, 2, 2, 3),      # index beyond the log: hint is our last entry
])
def test_follower_check_msg_app(term, index, commit, wreject, whint, wlogterm, windex):
    st = new_storage([1, 2, 3], ents=ents(1, 2))
    r = new_raft(1, storage=st)
    r.load_state(HardState(commit=1))
    r.become_follower(2, 2)
    r.step(Message(MsgApp, frm=2, to=1, term=2, log_term=term, index=index, commit=commit))
    (m,) = read_messages(r)
    assert (m.type, m.reject) == (MsgAppResp, wreject)
    if wreject:
        assert (m.index, m.reject_hint, m.log_term) == (index, whint, wlogterm)
    else:
        assert m.index == windex


# Reference: section 5.3
# If an existing entry conflicts with a new one (same index, different terms), delete the
# existing entry and all that follow it; append any new entries not already in the log.
@pytest.mark.parametrize("index,term,new,want,wunstable", [
    (2, 2, [(3, 3)], [(1, 1), (2, 2), (3, 3)], [(3, 3)]),
    (1, 1, [(2, 3), (3, 4)], [(1, 1), (2, 3), (3, 4)], [(2, 3), (3, 4)]),
    (0, 0, [(1, 1)], [(1, 1), (2, 2)], []),
    (0, 0, [(1, 3)], [(1, 3)], [(1, 3)]),
])
def test_follower_append_entries(index, term, new, want, wunstable):
    st = new_storage([1, 2, 3], ents=ents(1, 2))
    r = new_raft(1, storage=st)
    r.become_follower(2, 2)
    es = [Entry(t, i) for i, t in new]
    r.step(Message(MsgApp, frm=2, to=1, term=2, log_term=term, index=index, entries=es))
    assert log_terms(r) == want
    assert [(e.index, e.term) for e in r.raft_log.unstable_entries()] == wunstable


# Reference: section 5.3, Figure 7
# The leader brings every follower's log into consistency with its own, whatever the
# follower's log looked like (missing entries, extra uncommitted entries, or both).
FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("name", sorted(FIG7_FOLLOWERS))
def test_leader_sync_follower_log(name):
    term = 8
    lead_st = new_storage([1, 2, 3], ents=ents(*FIG7_LEADER),
                          hs=HardState(term=term, commit=len(FIG7_LEADER)))
    lead = new_raft(1, storage=lead_st)
    fol_st = new_storage([1, 2, 3], ents=ents(*FIG7_FOLLOWERS[name]),
                         hs=HardState(term=term - 1))
    fol = new_raft(2, storage=fol_st)
    # The third node votes for the leader and is otherwise absent.
    nt = Network(lead, fol, None)
    nt.isolate(3)
    nt.recover()
    nt.peers[3].load_state(HardState(term=term))
    nt.campaign(1)
    nt.propose(1, b"")
    assert lead.state == StateLeader
    assert log_terms(fol) == log_terms(lead)


# Fast back-off (thesis §5.3 optimisation): a follower with a long divergent tail is
# repaired in a number of round trips bounded by the number of terms, not entries.
def test_fast_backoff_skips_whole_terms():
    lead_log = [1] * 5 + [5] * 50
    fol_log = [1] * 5 + [2] * 30 + [3] * 30 + [4] * 30
    lead = new_raft(1, storage=new_storage([1, 2, 3], ents=ents(*lead_log),
                                           hs=HardState(term=6, commit=5)))
    fol = new_raft(2, storage=new_storage([1, 2, 3], ents=ents(*fol_log),
                                          hs=HardState(term=6, commit=5)))
    nt = Network(lead, fol, None)
    rejects = []
    nt.msg_hook = lambda m: (rejects.append(m) if m.type == MsgAppResp and m.reject
                             else None) or True
    nt.peers[3].load_state(HardState(term=6))
    nt.campaign(1)
    assert lead.state == StateLeader
    assert log_terms(fol) == log_terms(lead)
    assert len(rejects) <= 3


# Reference: section 5.3 / etcd proposal forwarding
# A follower forwards proposals to the leader; without a leader it drops them with a
# clear error.
def test_proposal_forwarding_and_dropping():
    nt = Network(None, None, None)
    with pytest.raises(ProposalDropped):
        nt.peers[2].step(prop(2))
    nt.campaign(1)
    nt.propose(2, b"via follower")
    assert [e.data for e in nt.peers[1].raft_log.all_entries()][-1] == b"via follower"
    assert nt.peers[3].raft_log.committed == nt.peers[1].raft_log.committed


def test_proposal_forwarding_can_be_disabled():
    r = new_raft(2, disable_proposal_forwarding=True)
    r.become_follower(1, 1)
    with pytest.raises(ProposalDropped):
        r.step(prop(2))


def test_candidate_drops_proposals():
    r = new_raft(1)
    hup(r)
    with pytest.raises(ProposalDropped):
        r.step(prop(1))


# Flow control: a follower in Probe gets one append per heartbeat; in Replicate the
# leader streams up to max_inflight_msgs appends; each append respects max_size_per_msg.
def test_probe_state_sends_one_message_until_response():
    r = leader()
    pr = r.trk.progress[2]
    assert pr.state == StateProbe
    for _ in range(3):
        r.step(prop(1))
    msgs = [m for m in read_messages(r) if m.to == 2]
    assert len(msgs) == 1
    r.step(Message(MsgHeartbeatResp, frm=2, to=1, term=1))
    assert len([m for m in read_messages(r) if m.to == 2]) == 1


def test_replicate_state_bounded_inflight_window():
    r = leader(max_inflight_msgs=3)
    commit_noop(r)
    assert r.trk.progress[2].state == StateReplicate
    for _ in range(10):
        r.step(prop(1))
    msgs = [m for m in read_messages(r) if m.to == 2 and m.type == MsgApp]
    assert len(msgs) == 3
    # Acking the first frees one slot and lets exactly one more out.
    first = msgs[0]
    r.step(Message(MsgAppResp, frm=2, to=1, term=1, index=first.index + len(first.entries)))
    more = [m for m in read_messages(r) if m.to == 2 and m.type == MsgApp and m.entries]
    assert len(more) == 1


def test_max_size_per_msg_splits_appends():
    r = leader(max_size_per_msg=100)
    commit_noop(r)
    r.step(Message(MsgProp, frm=1, entries=[Entry(data=b"x" * 40) for _ in range(6)]))
    # 61 bytes per entry encoded: one entry per message (at least one is always sent);
    # each ack lets the next one out.
    sent = []
    while True:
        msgs = [m for m in read_messages(r) if m.to == 2 and m.type == MsgApp and m.entries]
        if not msgs:
            break
        sent += msgs
        for m in msgs:
            r.step(Message(MsgAppResp, frm=2, to=1, term=1, index=m.index + len(m.entries)))
    assert all(len(m.entries) == 1 for m in sent)
    assert len(sent) == 6


def test_batched_proposal_is_one_append_per_follower():
    r = leader()
    commit_noop(r)
    r.step(Message(MsgProp, frm=1, entries=[Entry(data=b"%d" % i) for i in range(64)]))
    msgs = [m for m in read_messages(r) if m.type == MsgApp]
    assert sorted(m.to for m in msgs) == [2, 3]
    assert all(len(m.entries) == 64 for m in msgs)


def test_stale_reject_is_ignored():
    r = leader()
    commit_noop(r)
    for _ in range(2):
        r.step(prop(1))
    read_messages(r)
    pr = r.trk.progress[2]
    nxt = pr.next
    r.step(Message(MsgAppResp, frm=2, to=1, term=1, index=1, reject=True, reject_hint=1))
    assert pr.next == nxt and pr.state == StateReplicate
