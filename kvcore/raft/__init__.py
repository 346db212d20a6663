"""kvcore.raft: a pure, deterministic Raft library in the style of etcd-io/raft.

Start at ``rawnode.RawNode`` (the API and the caller's contract), ``raft.Raft`` (the
state machine), and ``storage.MemoryStorage``.  No module here imports asyncio,
sockets, a clock or a disk.
"""
from .codec import (decode_conf_change, decode_entries, decode_entry, decode_hard_state,
                    decode_message, decode_snapshot, encode_conf_change, encode_entries,
                    encode_entry, encode_hard_state, encode_message, encode_snapshot)
from .errors import (ConfChangeError, ErrCompacted, ErrSnapOutOfDate,
                     ErrSnapshotTemporarilyUnavailable, ErrStepLocalMsg,
                     ErrStepPeerNotFound, ErrUnavailable, ProposalDropped, RaftError)
from .raft import Config, Raft
from .rawnode import RawNode, Ready, SoftState
from .read_only import ReadState
from .storage import MemoryStorage
from .types import (NONE, ConfChange, ConfChangeSingle, ConfChangeTransition,
                    ConfChangeType, ConfState, Entry, EntryType, HardState, Message,
                    MessageType, Snapshot, SnapshotMetadata, StateType)

__all__ = [
    "Config", "Raft", "RawNode", "Ready", "SoftState", "ReadState", "MemoryStorage",
    "NONE", "ConfChange", "ConfChangeSingle", "ConfChangeTransition", "ConfChangeType",
    "ConfState", "Entry", "EntryType", "HardState", "Message", "MessageType", "Snapshot",
    "SnapshotMetadata", "StateType", "ProposalDropped", "RaftError", "ConfChangeError",
    "ErrCompacted", "ErrSnapOutOfDate", "ErrUnavailable",
    "ErrSnapshotTemporarilyUnavailable", "ErrStepLocalMsg", "ErrStepPeerNotFound",
    "encode_message", "decode_message", "encode_entry", "decode_entry", "encode_entries",
    "decode_entries", "encode_hard_state", "decode_hard_state", "encode_snapshot",
    "decode_snapshot", "encode_conf_change", "decode_conf_change",
]
