"""Client interaction, after the Raft paper §8: leaders serve clients, a new leader
commits a no-op of its term at the start of its term, and reads need a quorum check."""
import pytest

from kvcore.raft import (Config, ConfState, MemoryStorage, Message, ProposalDropped,
                         RawNode)
from kvcore.raft.types import EntryNormal, MsgApp, StateLeader

from .harness import Network, new_raft, new_storage


def drive(node, st, applied):
    """One driver iteration honouring the contract: persist, send, apply, advance."""
    rd = node.ready()
    if rd.snapshot is not None:
        st.apply_snapshot(rd.snapshot)
    st.append(rd.entries)
    if rd.hard_state is not None:
        st.set_hard_state(rd.hard_state)
    applied.extend(rd.committed_entries)
    node.advance()
    return rd


# Reference: section 8
# A single-member cluster is its own quorum: campaign() elects it at once and proposals
# commit as soon as they are persisted (same Ready), with no second code path.
def test_single_node_proposals_commit_once_persisted():
    st = new_storage([1])
    node = RawNode(Config(1, st, election_tick=10, heartbeat_tick=1))
    node.campaign()
    applied = []
    rd = drive(node, st, applied)
    assert rd.soft_state.raft_state == StateLeader
    node.propose_batch([b"a", b"b"])
    node.propose(b"c")
    rd = drive(node, st, applied)
    assert [e.data for e in rd.entries] == [b"a", b"b", b"c"]
    assert [e.data for e in rd.committed_entries] == [b"a", b"b", b"c"]
    assert rd.must_sync and not rd.messages
    assert not node.has_ready()


# Reference: section 8
# Each leader commits a blank no-op entry at the start of its term.
def test_new_leader_appends_noop_of_its_term():
    nt = Network(None, None, None)
    nt.campaign(1)
    last = nt.peers[1].raft_log.all_entries()[-1]
    assert (last.term, last.type, last.data) == (1, EntryNormal, b"")
    assert all(p.raft_log.committed == 1 for p in nt.peers.values())


# Reference: section 8
# Clients send requests to the leader; a follower without a leader rejects with a clear
# error (ProposalDropped) so the client can retry elsewhere.
def test_proposal_without_leader_raises_proposal_dropped():
    node = RawNode(Config(1, new_storage([1, 2, 3]), election_tick=10, heartbeat_tick=1))
    with pytest.raises(ProposalDropped):
        node.propose(b"x")


def test_proposal_dropped_by_leader_in_transfer():
    r = new_raft(1)
    r.become_candidate()
    r.become_leader()
    r.lead_transferee = 2
    with pytest.raises(ProposalDropped):
        r.step(Message(2, frm=1, entries=[__import__("kvcore.raft").raft.Entry(data=b"x")]))


def test_uncommitted_size_limit_drops_proposals():
    r = new_raft(1, max_uncommitted_entries_size=10)
    r.become_candidate()
    r.become_leader()
    from kvcore.raft import Entry
    r.step(Message(2, frm=1, entries=[Entry(data=b"x" * 8)]))
    with pytest.raises(ProposalDropped):
        r.step(Message(2, frm=1, entries=[Entry(data=b"y" * 8)]))


# Reference: section 8 (the caller's contract)
# Entries are handed out for persisting before the messages that depend on them are
# released: a leader's MsgApp for an entry comes in the same Ready that carries the entry.
def test_ready_pairs_entries_with_messages_that_depend_on_them():
    st = new_storage([1, 2])
    node = RawNode(Config(1, st, election_tick=10, heartbeat_tick=1))
    node.campaign()
    drive(node, st, [])
    node.step(Message(6, frm=2, to=1, term=1))   # MsgVoteResp grant
    rd = drive(node, st, [])
    apps = [m for m in rd.messages if m.type == MsgApp]
    assert apps and all(e in rd.entries for m in apps for e in m.entries)
