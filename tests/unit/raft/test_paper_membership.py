"""Cluster membership changes, after the Raft paper §6 (joint consensus) and the thesis
§4.3 (one server at a time)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore.raft import (ConfChange, ConfChangeError, ConfChangeSingle, ConfChangeTransition,
                         ConfState, Entry, Message, ProposalDropped)
from kvcore.raft.codec import decode_conf_change, encode_conf_change
from kvcore.raft.confchange import Changer, restore
from kvcore.raft.progress import Progress
from kvcore.raft.quorum import (JointConfig, MajorityConfig, VoteLost, VotePending,
                                VoteWon)
from kvcore.raft.tracker import ProgressTracker
from kvcore.raft.types import (ConfChangeType, EntryConfChange, MsgAppResp, MsgProp,
                               StateFollower, StateLeader)

from .harness import Network, hup, new_raft, read_messages

Add, Remove, AddLearner = (ConfChangeType.AddNode, ConfChangeType.RemoveNode,
                           ConfChangeType.AddLearnerNode)


def cc(*pairs, transition=ConfChangeTransition.Auto):
    return ConfChange([ConfChangeSingle(t, i) for t, i in pairs], transition)


def tracker_for(voters, learners=()):
    tr = ProgressTracker(16)
    restore(Changer(tr, 10), ConfState(voters, learners))
    return tr


def leader(peers=(1, 2, 3)):
    r = new_raft(1, peers)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    return r


def conf_prop(c):
    return Message(MsgProp, frm=1, entries=[Entry(type=EntryConfChange,
                                                  data=encode_conf_change(c))])


# Reference: section 6 (one at a time, thesis §4.3)
# Adding or removing a single voter is applied directly: any majority of the old and the
# new configuration overlap.
def test_simple_add_and_remove():
    tr = tracker_for([1, 2, 3])
    cfg, prs = Changer(tr, 10).simple([ConfChangeSingle(Add, 4)])
    assert sorted(cfg.voters.incoming) == [1, 2, 3, 4] and 4 in prs
    assert prs[4].next == 10 and prs[4].recent_active
    tr.set(cfg, prs)
    cfg, prs = Changer(tr, 10).simple([ConfChangeSingle(Remove, 2)])
    assert sorted(cfg.voters.incoming) == [1, 3, 4] and 2 not in prs


def test_simple_refuses_two_voter_changes():
    tr = tracker_for([1, 2, 3])
    with pytest.raises(ConfChangeError):
        Changer(tr, 10).simple([ConfChangeSingle(Add, 4), ConfChangeSingle(Add, 5)])
    with pytest.raises(ConfChangeError):
        Changer(tr, 10).simple([ConfChangeSingle(Remove, 1), ConfChangeSingle(Add, 5)])


def test_cannot_remove_all_voters():
    tr = tracker_for([1])
    with pytest.raises(ConfChangeError):
        Changer(tr, 10).simple([ConfChangeSingle(Remove, 1)])


# Reference: section 6
# Joint consensus: C_old,new requires majorities from both C_old and C_new for elections
# and for commitment.
def test_joint_quorum_requires_both_majorities():
    jc = JointConfig([1, 2, 3], [3, 4, 5])
    prs = {i: Progress(match=m) for i, m in {1: 10, 2: 10, 3: 5, 4: 4, 5: 3}.items()}
    assert jc.committed_index(prs) == 4   # old majority at 10, new majority at 4
    assert jc.vote_result({1: True, 2: True}) == VotePending
    assert jc.vote_result({1: True, 2: True, 4: True, 5: True}) == VoteWon
    assert jc.vote_result({1: True, 2: True, 4: False, 5: False}) == VoteLost


def test_enter_and_leave_joint():
    tr = tracker_for([1, 2, 3])
    cfg, prs = Changer(tr, 10).enter_joint(True, [ConfChangeSingle(Add, 4),
                                                  ConfChangeSingle(Remove, 1)])
    assert sorted(cfg.voters.incoming) == [2, 3, 4]
    assert sorted(cfg.voters.outgoing) == [1, 2, 3]
    assert cfg.auto_leave and 1 in prs
    tr.set(cfg, prs)
    with pytest.raises(ConfChangeError):
        Changer(tr, 10).simple([ConfChangeSingle(Add, 5)])
    with pytest.raises(ConfChangeError):
        Changer(tr, 10).enter_joint(False, [ConfChangeSingle(Add, 5)])
    cfg, prs = Changer(tr, 10).leave_joint()
    assert sorted(cfg.voters.incoming) == [2, 3, 4] and not cfg.voters.outgoing
    assert 1 not in prs and not cfg.auto_leave


def test_demoting_a_voter_in_joint_goes_through_learners_next():
    tr = tracker_for([1, 2, 3])
    cfg, prs = Changer(tr, 10).enter_joint(False, [ConfChangeSingle(AddLearner, 3),
                                                   ConfChangeSingle(Add, 4)])
    assert cfg.learners_next == {3} and 3 in cfg.voters.outgoing
    assert not prs[3].is_learner
    tr.set(cfg, prs)
    cfg, prs = Changer(tr, 10).leave_joint()
    assert cfg.learners == {3} and prs[3].is_learner and not cfg.learners_next


@pytest.mark.parametrize("cs", [
    ConfState([1]), ConfState([1, 2, 3], [4]),
    ConfState([2, 3, 4], [5], [1, 2, 3], [], True),
    ConfState([2, 3, 4], [], [1, 2, 3], [1], False),
])
def test_restore_round_trips_conf_state(cs):
    tr = ProgressTracker(16)
    restore(Changer(tr, 10), cs)
    assert tr.conf_state() == cs


# Reference: section 6 — the change takes effect when the entry is applied; the leader
# accepts only one pending (unapplied) configuration change at a time.
def test_leader_refuses_second_pending_conf_change():
    r = leader()
    r.step(conf_prop(cc((Add, 4))))
    r.step(conf_prop(cc((Add, 5))))
    es = r.raft_log.unstable_entries()
    assert es[-2].type == EntryConfChange
    assert es[-1].type != EntryConfChange  # replaced by an empty normal entry


def test_leader_refuses_leave_when_not_joint_and_change_when_joint():
    r = leader()
    r.raft_log.commit_to(r.raft_log.last_index())
    r.raft_log.applied_to(r.raft_log.last_index())
    r.step(conf_prop(ConfChange()))    # leave-joint while not joint
    assert r.raft_log.unstable_entries()[-1].type != EntryConfChange


def test_add_node_then_commit_needs_new_majority():
    r = leader((1, 2, 3))
    r.apply_conf_change(cc((Add, 4)))
    r.apply_conf_change(cc((Add, 5)))
    r.step(Message(MsgProp, frm=1, entries=[Entry(data=b"x")]))
    li = r.raft_log.last_index()
    r.step(Message(MsgAppResp, frm=2, to=1, term=1, index=li))
    assert r.raft_log.committed < li      # 2 of 5
    r.step(Message(MsgAppResp, frm=3, to=1, term=1, index=li))
    assert r.raft_log.committed == li     # 3 of 5


# Removing a node shrinks the quorum: entries pending on the old quorum may commit at once.
def test_remove_node_commits_pending():
    r = leader((1, 2))
    r.step(Message(MsgProp, frm=1, entries=[Entry(data=b"x")]))
    assert r.raft_log.committed == 0
    r.apply_conf_change(cc((Remove, 2)))
    assert r.raft_log.committed == r.raft_log.last_index()


def test_removed_leader_steps_down():
    r = leader((1, 2, 3))
    r.apply_conf_change(cc((Remove, 1)))
    assert r.state == StateFollower
    with pytest.raises(ProposalDropped):
        r.step(Message(MsgProp, frm=1, entries=[Entry(data=b"x")]))


def test_no_campaign_with_pending_unapplied_conf_change():
    r = new_raft(1)
    r.become_follower(1, 2)
    r.raft_log.append([Entry(1, 1, EntryConfChange, encode_conf_change(cc((Add, 4))))])
    r.raft_log.commit_to(1)
    hup(r)
    assert r.state == StateFollower


# Joint consensus end to end: a two-change proposal enters the joint config; applying it on
# the leader triggers the automatic leave (auto_leave), which commits under C_new alone.
def test_joint_change_auto_leaves_end_to_end():
    nt = Network(None, None, None)
    nt.campaign(1)
    lead = nt.peers[1]
    change = cc((AddLearner, 3), (Add, 2), transition=ConfChangeTransition.Auto)
    nt.send(Message(MsgProp, frm=1, to=1, entries=[
        Entry(type=EntryConfChange, data=encode_conf_change(change))]))

    def apply_all():
        for p in nt.peers.values():
            for e in p.raft_log.next_ents():
                if e.type == EntryConfChange:
                    p.apply_conf_change(decode_conf_change(e.data))
                p.applied_to(e.index)
                nt.send(*read_messages(p))

    apply_all()
    assert lead.trk.config.voters.is_joint()
    # The auto-leave was proposed by applied_to on the leader.
    apply_all()
    apply_all()
    assert not lead.trk.config.voters.is_joint()
    assert lead.trk.config.learners == {3}
    assert nt.peers[2].trk.config.learners == {3}


# Comparison test (the "quick" pattern): the fast quorum code against brute force.
@settings(deadline=None, derandomize=True)
@given(st.dictionaries(st.integers(1, 9), st.integers(0, 20), min_size=0, max_size=7))
def test_majority_committed_index_matches_brute_force(matches):
    cfg = MajorityConfig(matches)
    prs = {i: Progress(match=m) for i, m in matches.items()}
    got = cfg.committed_index(prs)
    if not matches:
        assert got == (1 << 64) - 1
        return
    best = max(i for i in range(0, 21)
               if sum(1 for m in matches.values() if m >= i) > len(matches) // 2)
    assert got == best


@settings(deadline=None, derandomize=True)
@given(st.sets(st.integers(1, 9), max_size=7), st.dictionaries(st.integers(1, 9),
                                                                st.booleans()))
def test_majority_vote_result_matches_brute_force(ids, votes):
    cfg = MajorityConfig(ids)
    got = cfg.vote_result(votes)
    if not ids:
        assert got == VoteWon
        return
    yes = sum(1 for i in ids if votes.get(i) is True)
    no = sum(1 for i in ids if votes.get(i) is False)
    q = len(ids) // 2 + 1
    want = VoteWon if yes >= q else (VoteLost if len(ids) - no < q else VotePending)
    assert got == want
