"""RawNode's Ready/Advance contract."""
import pytest

from kvcore.raft import (Config, ConfChange, ConfChangeSingle, ErrStepLocalMsg,
                         ErrStepPeerNotFound, HardState, Message, RawNode)
from kvcore.raft.codec import decode_conf_change
from kvcore.raft.types import (ConfChangeType, EntryConfChange, MsgAppResp, MsgHup,
                               MsgVote, StateLeader)

from .harness import new_storage


def node(voters=(1,), **kw):
    st = new_storage(list(voters))
    return RawNode(Config(1, st, election_tick=10, heartbeat_tick=1, **kw)), st


def handle(n, st):
    rd = n.ready()
    if rd.snapshot is not None:
        st.apply_snapshot(rd.snapshot)
    st.append(rd.entries)
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    for e in rd.committed_entries:
        if e.type == EntryConfChange:
            n.apply_conf_change(decode_conf_change(e.data))
    n.advance()
    return rd


def test_ready_twice_without_advance_is_an_error():
    n, _ = node()
    n.campaign()
    n.ready()
    with pytest.raises(AssertionError):
        n.ready()


def test_has_ready_and_soft_state():
    n, st = node()
    assert not n.has_ready()
    n.campaign()
    assert n.has_ready()
    rd = handle(n, st)
    assert rd.soft_state.lead == 1 and rd.soft_state.raft_state == StateLeader
    assert not n.has_ready()


def test_must_sync_only_for_entries_term_or_vote():
    n, st = node((1, 2))
    n.step(Message(MsgVote, frm=2, to=1, term=2))
    rd = handle(n, st)
    assert rd.must_sync
    from kvcore.raft.types import MsgHeartbeat
    n.step(Message(MsgHeartbeat, frm=2, to=1, term=2, commit=0))
    rd = handle(n, st)
    assert not rd.must_sync and not rd.entries


def test_step_rejects_local_messages_and_unknown_responders():
    n, _ = node((1, 2))
    with pytest.raises(ErrStepLocalMsg):
        n.step(Message(MsgHup, frm=1))
    with pytest.raises(ErrStepPeerNotFound):
        n.step(Message(MsgAppResp, frm=9, to=1, term=1))


def test_conf_change_through_rawnode():
    n, st = node()
    n.campaign()
    handle(n, st)
    n.propose_conf_change(ConfChange([ConfChangeSingle(ConfChangeType.AddLearnerNode, 2)]))
    rd = handle(n, st)
    assert [e.type for e in rd.committed_entries] == [EntryConfChange]
    assert n.raft.trk.config.learners == {2}


def test_restart_keeps_hard_state_and_does_not_reapply():
    n, st = node()
    n.campaign()
    handle(n, st)
    n.propose(b"a")
    rd = handle(n, st)
    applied = rd.committed_entries[-1].index
    n2 = RawNode(Config(1, st, election_tick=10, heartbeat_tick=1, applied=applied))
    r = n2.raft
    assert (r.term, r.vote, r.raft_log.committed) == (1, 1, applied)
    assert not n2.has_ready()


def test_status():
    n, st = node()
    n.campaign()
    handle(n, st)
    s = n.status()
    assert s["state"] == StateLeader and s["lead"] == 1 and "progress" in s
