"""Raft wire and storage types: Message, Entry, HardState, Snapshot, ConfState, ConfChange.

All types are plain ``__slots__`` classes holding ints, bytes and lists, so they are cheap
to build and compare.  ``kvcore.raft.codec`` turns them into compact bytes and back.

Ownership: once an object has been handed to the Raft state machine (a Message passed to
``step``, an Entry appended to the log, a Snapshot given to storage) it must not be mutated
by the caller.  Raft itself mutates only proposals it has just received (it stamps
``term``/``index`` on the entries of a MsgProp).
"""
from __future__ import annotations

from enum import IntEnum

NONE = 0  # "no node": node ids start at 1


class MessageType(IntEnum):
    MsgHup = 0            # local: start an election
    MsgBeat = 1           # local: leader sends heartbeats
    MsgProp = 2           # local or forwarded: propose entries
    MsgApp = 3
    MsgAppResp = 4
    MsgVote = 5
    MsgVoteResp = 6
    MsgSnap = 7
    MsgHeartbeat = 8
    MsgHeartbeatResp = 9
    MsgUnreachable = 10   # local: report a peer unreachable
    MsgSnapStatus = 11    # local: report snapshot sending result
    MsgCheckQuorum = 12   # local: leader checks it still hears from a quorum
    MsgTransferLeader = 13
    MsgTimeoutNow = 14
    MsgReadIndex = 15
    MsgReadIndexResp = 16
    MsgPreVote = 17
    MsgPreVoteResp = 18


# Module-level aliases: the hot paths compare ``m.type == MsgApp``.
MsgHup = MessageType.MsgHup
MsgBeat = MessageType.MsgBeat
MsgProp = MessageType.MsgProp
MsgApp = MessageType.MsgApp
MsgAppResp = MessageType.MsgAppResp
MsgVote = MessageType.MsgVote
MsgVoteResp = MessageType.MsgVoteResp
MsgSnap = MessageType.MsgSnap
MsgHeartbeat = MessageType.MsgHeartbeat
MsgHeartbeatResp = MessageType.MsgHeartbeatResp
MsgUnreachable = MessageType.MsgUnreachable
MsgSnapStatus = MessageType.MsgSnapStatus
MsgCheckQuorum = MessageType.MsgCheckQuorum
MsgTransferLeader = MessageType.MsgTransferLeader
MsgTimeoutNow = MessageType.MsgTimeoutNow
MsgReadIndex = MessageType.MsgReadIndex
MsgReadIndexResp = MessageType.MsgReadIndexResp
MsgPreVote = MessageType.MsgPreVote
MsgPreVoteResp = MessageType.MsgPreVoteResp

LOCAL_MSGS = frozenset((MsgHup, MsgBeat, MsgUnreachable, MsgSnapStatus, MsgCheckQuorum))
RESPONSE_MSGS = frozenset((MsgAppResp, MsgVoteResp, MsgHeartbeatResp, MsgUnreachable,
                           MsgReadIndexResp, MsgPreVoteResp))


def is_local_msg(t: int) -> bool:
    return t in LOCAL_MSGS


def is_response_msg(t: int) -> bool:
    return t in RESPONSE_MSGS


def vote_resp_msg_type(t: int) -> int:
    if t == MsgVote:
        return MsgVoteResp
    if t == MsgPreVote:
        return MsgPreVoteResp
    raise ValueError(f"not a vote message: {t}")


class EntryType(IntEnum):
    Normal = 0
    ConfChange = 1


EntryNormal = EntryType.Normal
EntryConfChange = EntryType.ConfChange


class Entry:
    """One log entry.  ``data`` is opaque to Raft."""

    __slots__ = ("term", "index", "type", "data")

    def __init__(self, term: int = 0, index: int = 0, type: int = EntryNormal,
                 data: bytes = b"") -> None:
        self.term = term
        self.index = index
        self.type = type
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Entry) and self.term == other.term
                and self.index == other.index and self.type == other.type
                and self.data == other.data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        t = "" if self.type == EntryNormal else " conf"
        return f"Entry({self.term}/{self.index}{t} {self.data[:16]!r})"


class HardState:
    """What must be persisted (with the entries) before messages are sent."""

    __slots__ = ("term", "vote", "commit")

    def __init__(self, term: int = 0, vote: int = 0, commit: int = 0) -> None:
        self.term = term
        self.vote = vote
        self.commit = commit

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HardState) and self.term == other.term
                and self.vote == other.vote and self.commit == other.commit)

    __hash__ = None  # type: ignore[assignment]

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == 0 and self.commit == 0

    def copy(self) -> "HardState":
        return HardState(self.term, self.vote, self.commit)

    def __repr__(self) -> str:
        return f"HardState(term={self.term}, vote={self.vote}, commit={self.commit})"


class ConfState:
    """The membership a snapshot (or the log up to an index) implies."""

    __slots__ = ("voters", "learners", "voters_outgoing", "learners_next", "auto_leave")

    def __init__(self, voters=(), learners=(), voters_outgoing=(), learners_next=(),
                 auto_leave: bool = False) -> None:
        self.voters = sorted(voters)
        self.learners = sorted(learners)
        self.voters_outgoing = sorted(voters_outgoing)
        self.learners_next = sorted(learners_next)
        self.auto_leave = bool(auto_leave)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfState) and self.voters == other.voters
                and self.learners == other.learners
                and self.voters_outgoing == other.voters_outgoing
                and self.learners_next == other.learners_next
                and self.auto_leave == other.auto_leave)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = f"voters={self.voters}"
        if self.voters_outgoing:
            s += f"&&{self.voters_outgoing}"
        if self.learners:
            s += f" learners={self.learners}"
        if self.learners_next:
            s += f" learners_next={self.learners_next}"
        if self.auto_leave:
            s += " autoleave"
        return f"ConfState({s})"


class SnapshotMetadata:
    __slots__ = ("conf_state", "index", "term")

    def __init__(self, conf_state: ConfState | None = None, index: int = 0,
                 term: int = 0) -> None:
        self.conf_state = conf_state if conf_state is not None else ConfState()
        self.index = index
        self.term = term

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, SnapshotMetadata) and self.index == other.index
                and self.term == other.term and self.conf_state == other.conf_state)

    __hash__ = None  # type: ignore[assignment]


class Snapshot:
    __slots__ = ("data", "metadata")

    def __init__(self, data: bytes = b"", metadata: SnapshotMetadata | None = None) -> None:
        self.data = data
        self.metadata = metadata if metadata is not None else SnapshotMetadata()

    def is_empty(self) -> bool:
        return self.metadata.index == 0

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Snapshot) and self.data == other.data
                and self.metadata == other.metadata)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        md = self.metadata
        return f"Snapshot(index={md.index}, term={md.term}, {md.conf_state!r})"


class ConfChangeType(IntEnum):
    AddNode = 0
    RemoveNode = 1
    UpdateNode = 2
    AddLearnerNode = 3


class ConfChangeTransition(IntEnum):
    Auto = 0           # simple change if possible, else joint with automatic leave
    JointImplicit = 1  # always joint, leave automatically
    JointExplicit = 2  # always joint, the application proposes the leave itself


class ConfChangeSingle:
    __slots__ = ("type", "node_id")

    def __init__(self, type: int, node_id: int) -> None:
        self.type = type
        self.node_id = node_id

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfChangeSingle) and self.type == other.type
                and self.node_id == other.node_id)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{ConfChangeType(self.type).name}({self.node_id})"


class ConfChange:
    """A membership change (etcd's ConfChangeV2).

    One change with ``Auto`` transition is applied directly ("one at a time"); several
    changes, or an explicit joint transition, go through joint consensus (Raft §6).  An
    empty change list with ``Auto`` transition leaves the joint configuration.
    """

    __slots__ = ("changes", "transition", "context")

    def __init__(self, changes=(), transition: int = ConfChangeTransition.Auto,
                 context: bytes = b"") -> None:
        self.changes = list(changes)
        self.transition = transition
        self.context = context

    @classmethod
    def single(cls, type: int, node_id: int, context: bytes = b"") -> "ConfChange":
        return cls([ConfChangeSingle(type, node_id)], context=context)

    def enter_joint(self) -> tuple[bool, bool]:
        """Return (auto_leave, uses_joint)."""
        if self.transition != ConfChangeTransition.Auto or len(self.changes) > 1:
            auto_leave = self.transition in (ConfChangeTransition.Auto,
                                             ConfChangeTransition.JointImplicit)
            return auto_leave, True
        return False, False

    def leave_joint(self) -> bool:
        return self.transition == ConfChangeTransition.Auto and not self.changes

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ConfChange) and self.changes == other.changes
                and self.transition == other.transition and self.context == other.context)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ConfChange({self.changes}, transition={self.transition})"


class Message:
    """A Raft message.  ``frm`` is the sender (``from`` is a Python keyword)."""

    __slots__ = ("type", "to", "frm", "term", "log_term", "index", "entries", "commit",
                 "snapshot", "reject", "reject_hint", "context")

    def __init__(self, type: int = MsgHup, to: int = 0, frm: int = 0, term: int = 0,
                 log_term: int = 0, index: int = 0, entries=(), commit: int = 0,
                 snapshot: Snapshot | None = None, reject: bool = False,
                 reject_hint: int = 0, context: bytes = b"") -> None:
        self.type = type
        self.to = to
        self.frm = frm
        self.term = term
        self.log_term = log_term
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.reject_hint = reject_hint
        self.context = context

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return False
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__
                   if f != "entries") and list(self.entries) == list(other.entries)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = (f"{MessageType(self.type).name} {self.frm}->{self.to} t{self.term}"
             f" lt{self.log_term} i{self.index} c{self.commit}")
        if self.entries:
            s += f" ents={len(self.entries)}[{self.entries[0].index}..]"
        if self.reject:
            s += f" reject(hint={self.reject_hint})"
        if self.snapshot is not None:
            s += f" {self.snapshot!r}"
        if self.context:
            s += f" ctx={self.context!r}"
        return f"<{s}>"


class StateType(IntEnum):
    Follower = 0
    Candidate = 1
    Leader = 2
    PreCandidate = 3


StateFollower = StateType.Follower
StateCandidate = StateType.Candidate
StateLeader = StateType.Leader
StatePreCandidate = StateType.PreCandidate

# Why a node campaigns (the context of its vote requests).
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"
