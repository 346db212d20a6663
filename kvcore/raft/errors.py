"""Errors raised by the Raft library.

Storage errors (``ErrCompacted``, ``ErrUnavailable``, ...) follow etcd's meaning: the
log below the first index was compacted away versus an index that is not there yet.
"""


class RaftError(Exception):
    """Base class of every error raised by kvcore.raft."""


class ProposalDropped(RaftError):
    """The proposal was not appended: no leader known, leadership transfer in progress,
    this node was removed, the uncommitted-size limit was hit, or forwarding is off.
    The caller should retry later (possibly on another member)."""


class ErrStepLocalMsg(RaftError):
    """A local-only message type was passed to RawNode.step from the network."""


class ErrStepPeerNotFound(RaftError):
    """A response arrived from a peer that is not in the configuration."""


class StorageError(RaftError):
    pass


class ErrCompacted(StorageError):
    """The requested index is older than the storage's first index (compacted away)."""


class ErrSnapOutOfDate(StorageError):
    """The snapshot is older than the one storage already has."""


class ErrUnavailable(StorageError):
    """The requested index is not available (beyond the last index)."""


class ErrSnapshotTemporarilyUnavailable(StorageError):
    """Storage cannot produce a snapshot right now; Raft will retry later."""


class ConfChangeError(RaftError):
    """A configuration change is invalid for the current configuration."""
