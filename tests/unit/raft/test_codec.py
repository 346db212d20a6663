"""Round-trip tests for the compact binary encoding of Raft types."""
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore.raft import (ConfChange, ConfChangeSingle, ConfState, Entry, HardState,
                         Message, Snapshot, SnapshotMetadata)
from kvcore.raft.codec import (decode_conf_change, decode_entries, decode_entry,
                               decode_hard_state, decode_message, decode_snapshot,
                               encode_conf_change, encode_entries, encode_entry,
                               encode_hard_state, encode_message, encode_snapshot)

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=1 << 20)
entries = st.builds(Entry, term=u64, index=u64, type=st.sampled_from([0, 1]),
                    data=st.binary(max_size=64))
ids = st.lists(st.integers(min_value=1, max_value=1 << 40), max_size=5, unique=True)
conf_states = st.builds(ConfState, voters=ids, learners=ids, voters_outgoing=ids,
                        learners_next=ids, auto_leave=st.booleans())
snapshots = st.builds(Snapshot, data=st.binary(max_size=64),
                      metadata=st.builds(SnapshotMetadata, conf_state=conf_states,
                                         index=u64, term=u64))
messages = st.builds(Message, type=st.integers(0, 18), to=u64, frm=u64, term=u64,
                     log_term=u64, index=u64, entries=st.lists(entries, max_size=4),
                     commit=u64, snapshot=st.none() | snapshots, reject=st.booleans(),
                     reject_hint=u64, context=st.binary(max_size=32))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(messages)
def test_message_round_trip(m):
    b = encode_message(m)
    assert decode_message(b) == m


@settings(deadline=None, derandomize=True)
@given(entries)
def test_entry_round_trip(e):
    b = encode_entry(e)
    got, off = decode_entry(b)
    assert got == e and off == len(b)


@settings(deadline=None, derandomize=True)
@given(st.lists(entries, max_size=10))
def test_entries_round_trip(es):
    b = encode_entries(es)
    got, off = decode_entries(b)
    assert got == es and off == len(b)


@settings(deadline=None, derandomize=True)
@given(st.builds(HardState, term=u64, vote=u64, commit=u64))
def test_hard_state_round_trip(hs):
    got, off = decode_hard_state(encode_hard_state(hs))
    assert got == hs and off == 24


@settings(deadline=None, derandomize=True)
@given(snapshots)
def test_snapshot_round_trip(s):
    b = encode_snapshot(s)
    got, off = decode_snapshot(b)
    assert got == s and off == len(b)


@settings(deadline=None, derandomize=True)
@given(st.lists(st.builds(ConfChangeSingle, type=st.integers(0, 3), node_id=u64),
                max_size=5), st.integers(0, 2), st.binary(max_size=16))
def test_conf_change_round_trip(changes, transition, ctx):
    cc = ConfChange(changes, transition, ctx)
    assert decode_conf_change(encode_conf_change(cc)) == cc


def test_empty_conf_change_data_is_leave_joint():
    assert decode_conf_change(b"").leave_joint()


def test_encoding_is_compact():
    # A heartbeat is a fixed 66-byte frame; an append adds 21 bytes per entry + data.
    hb = Message(8, to=2, frm=1, term=5, commit=10)
    assert len(encode_message(hb)) == 66
    app = Message(3, to=2, frm=1, term=5, index=9, log_term=5,
                  entries=[Entry(5, 10, 0, b"x" * 10)])
    assert len(encode_message(app)) == 66 + 21 + 10


def test_decode_from_memoryview_and_offset():
    m = Message(3, to=2, frm=1, term=5, entries=[Entry(5, 10, 0, b"abc")])
    b = b"pad" + encode_message(m)
    assert decode_message(memoryview(b), 3) == m
