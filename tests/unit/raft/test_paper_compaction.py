"""Log compaction and snapshots, after the Raft paper §7 (InstallSnapshot)."""
import pytest

from kvcore.raft import (ConfState, Entry, ErrCompacted, ErrSnapOutOfDate, ErrUnavailable,
                         HardState, MemoryStorage, Message, RawNode, Config, Snapshot,
                         SnapshotMetadata)
from kvcore.raft.log import RaftLog
from kvcore.raft.progress import StateProbe, StateReplicate, StateSnapshot
from kvcore.raft.types import MsgAppResp, MsgHeartbeatResp, MsgSnap

from .harness import ents, new_raft, new_storage, persist, read_messages


def snap(index, term, voters=(1, 2, 3), data=b"state"):
    return Snapshot(data, SnapshotMetadata(ConfState(voters), index, term))


def test_index_keeping_bounds_the_bytes_left_behind_a_snapshot():
    st = MemoryStorage()
    st.append([Entry(1, i, data=b"x" * 10) for i in range(1, 11)])   # 10 bytes each
    assert st.index_keeping(10, 35) == 7       # (7, 10]: 30 bytes; (6, 10] would be 40
    assert st.index_keeping(8, 10) == 7        # (7, 8]: one entry
    assert st.index_keeping(10, 9) == 10       # not even the last one
    assert st.index_keeping(10, 1000) == 0     # everything fits: back to the dummy
    st.compact(5)
    assert st.index_keeping(10, 1000) == 5     # never below the compacted prefix


# Reference: section 7
# Each server compacts its log independently: the snapshot replaces the committed prefix;
# the storage then reports compacted vs unavailable indexes distinctly.
def test_storage_compaction_contract():
    st = MemoryStorage()
    st.append(ents(1, 1, 2, 2, 3))
    st.create_snapshot(3, ConfState([1]), b"s3")
    st.compact(3)
    assert (st.first_index(), st.last_index()) == (4, 5)
    assert st.term(3) == 2                     # the snapshot's own index keeps its term
    with pytest.raises(ErrCompacted):
        st.term(2)
    with pytest.raises(ErrCompacted):
        st.entries(3, 5)
    with pytest.raises(ErrUnavailable):
        st.term(6)
    assert [e.index for e in st.entries(4, 6)] == [4, 5]
    with pytest.raises(ErrCompacted):
        st.compact(2)
    with pytest.raises(ErrSnapOutOfDate):
        st.create_snapshot(2, None, b"")
    with pytest.raises(ErrSnapOutOfDate):
        st.apply_snapshot(snap(3, 2))


def test_storage_append_truncates_conflicts_and_skips_compacted():
    st = MemoryStorage()
    st.append(ents(1, 1, 1))
    st.append([Entry(2, 2), Entry(2, 3), Entry(2, 4)])
    assert [(e.index, e.term) for e in st.entries(1, 5)] == [(1, 1), (2, 2), (3, 2), (4, 2)]
    st.compact(2)
    # The compacted prefix is skipped; like etcd, an append replaces everything after its
    # first entry (the caller only appends what Raft decided the log is).
    st.append([Entry(1, 1), Entry(2, 2), Entry(2, 3)])
    assert st.last_index() == 3 and st.first_index() == 3


def test_storage_entries_size_limit_returns_at_least_one():
    st = MemoryStorage()
    st.append([Entry(1, i, data=b"x" * 100) for i in range(1, 6)])
    assert len(st.entries(1, 6, 1)) == 1
    assert len(st.entries(1, 6, 250)) == 2


def test_raft_log_slices_across_storage_and_unstable():
    st = MemoryStorage()
    st.apply_snapshot(snap(3, 1))
    st.append(ents(1, 2, start=4))
    log = RaftLog(st)
    log.append(ents(2, 3, start=6))
    assert [e.index for e in log.slice(4, 8)] == [4, 5, 6, 7]
    with pytest.raises(ErrCompacted):
        log.slice(3, 5)
    assert log.term(3) == 1 and log.term(0) == 0 and log.term(9) == 0
    log.stable_to(7, 3)
    assert log.unstable.offset == 8 and not log.unstable.entries


def test_unstable_stable_to_ignores_stale_term():
    st = MemoryStorage()
    log = RaftLog(st)
    log.append(ents(1, 1))
    log.append([Entry(2, 2)])            # truncated 2 while a Ready held (2, term 1)
    log.stable_to(2, 1)                  # stale advance: must not drop the new entry
    assert [(e.index, e.term) for e in log.unstable.entries] == [(1, 1), (2, 2)]


# Reference: section 7
# The leader uses InstallSnapshot to send a snapshot to followers that lag too far
# behind (the entries they need were compacted).
def test_leader_sends_snapshot_to_lagging_follower():
    st = new_storage([1, 2, 3])
    st.apply_snapshot(snap(11, 11))
    st.set_hard_state(HardState(term=11, commit=11))
    r = new_raft(1, storage=st)
    r.become_candidate()
    r.become_leader()
    read_messages(r)
    pr = r.trk.progress[2]
    pr.recent_active = True
    # The follower rejects: it has nothing (hint 0).
    r.step(Message(MsgAppResp, frm=2, to=1, term=r.term, index=11, reject=True,
                   reject_hint=0))
    msgs = read_messages(r)
    assert [m.type for m in msgs] == [MsgSnap]
    assert msgs[0].snapshot.metadata.index == 11
    assert pr.state == StateSnapshot and pr.pending_snapshot == 11
    assert pr.is_paused()


@pytest.mark.parametrize("failed,wnext", [(False, 12), (True, 1)])
def test_snapshot_status_report(failed, wnext):
    st = new_storage([1, 2, 3])
    st.apply_snapshot(snap(11, 11))
    st.set_hard_state(HardState(term=11, commit=11))
    r = new_raft(1, storage=st)
    r.become_candidate()
    r.become_leader()
    pr = r.trk.progress[2]
    pr.become_snapshot(11)
    from kvcore.raft.types import MsgSnapStatus
    r.step(Message(MsgSnapStatus, frm=2, to=1, reject=failed))
    assert pr.state == StateProbe and pr.next == wnext
    assert pr.probe_sent  # waits for a response before probing again
    r.step(Message(MsgHeartbeatResp, frm=2, to=1, term=r.term))
    assert not pr.probe_sent or read_messages(r)


def test_snapshot_ack_moves_progress_to_replicate():
    st = new_storage([1, 2, 3])
    st.apply_snapshot(snap(11, 11))
    st.set_hard_state(HardState(term=11, commit=11))
    r = new_raft(1, storage=st)
    r.become_candidate()
    r.become_leader()
    pr = r.trk.progress[2]
    pr.become_snapshot(11)
    r.step(Message(MsgAppResp, frm=2, to=1, term=r.term, index=11))
    assert pr.state == StateReplicate and pr.match == 11


# Reference: section 7
# If the follower receives a snapshot describing a prefix of its log, entries covered by
# the snapshot are deleted but entries following it are retained; otherwise the whole log
# is replaced.
def test_follower_restores_snapshot():
    r = new_raft(2, storage=new_storage([1, 2, 3], ents=ents(1, 1)))
    r.become_follower(2, 1)
    s = snap(11, 11)
    r.step(Message(MsgSnap, frm=1, to=2, term=2, snapshot=s))
    assert r.raft_log.committed == 11 and r.raft_log.last_index() == 11
    assert r.raft_log.last_term() == 11
    assert r.trk.voter_nodes() == [1, 2, 3]
    (m,) = read_messages(r)
    assert (m.type, m.index) == (MsgAppResp, 11)


def test_follower_ignores_stale_snapshot_and_fast_forwards_matching_one():
    r = new_raft(2, storage=new_storage([1, 2, 3], ents=ents(1, 1, 1)))
    r.become_follower(2, 1)
    r.raft_log.commit_to(2)
    r.step(Message(MsgSnap, frm=1, to=2, term=2, snapshot=snap(2, 1)))
    assert r.raft_log.unstable.snapshot is None        # older than our commit
    r.step(Message(MsgSnap, frm=1, to=2, term=2, snapshot=snap(3, 1)))
    assert r.raft_log.unstable.snapshot is None        # we have (3, 1): fast-forward
    assert r.raft_log.committed == 3


def test_snapshot_without_the_recipient_is_ignored():
    r = new_raft(4, (1, 2, 3, 4))
    r.become_follower(2, 1)
    r.step(Message(MsgSnap, frm=1, to=4, term=2, snapshot=snap(11, 11, voters=(1, 2, 3))))
    assert r.raft_log.committed == 0


def test_rawnode_ready_carries_snapshot_and_applied_moves():
    st = new_storage([1, 2, 3])
    node = RawNode(Config(2, st, election_tick=10, heartbeat_tick=1))
    node.step(Message(MsgSnap, frm=1, to=2, term=2, snapshot=snap(11, 11)))
    rd = node.ready()
    assert rd.snapshot.metadata.index == 11 and rd.must_sync
    assert rd.hard_state.commit == 11
    st.apply_snapshot(rd.snapshot)
    st.set_hard_state(rd.hard_state)
    node.advance()
    assert node.raft.raft_log.applied == 11
    assert not node.has_ready()


def test_restart_from_snapshot_and_log():
    st = new_storage([1, 2, 3])
    st.apply_snapshot(snap(5, 2))
    st.append(ents(2, 3, start=6))
    st.set_hard_state(HardState(term=3, vote=1, commit=7))
    node = RawNode(Config(2, st, election_tick=10, heartbeat_tick=1, applied=5))
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [6, 7]
    assert rd.hard_state is None and not rd.entries
    r = node.raft
    assert (r.term, r.vote, r.raft_log.committed) == (3, 1, 7)
