"""The entry codec: what a client proposal looks like inside a Raft entry.

Format of an entry's data (little-endian):

    u64 request id | u8 op | the op's payload (etcd request bytes, see each op)

The request id names the caller waiting on this member (the proposer's waiter
table); other members ignore it. The op codes are part of the WAL format: an entry
written by an older build must apply the same, so a code is never reused or
renumbered. A new op takes the next free number here and registers one applier
(kvcore/services/registry.py) in the service that owns it.

The proposer (ext/proposer.pyx, twin kvcore/server/proposer_py.py) writes this
format; ``decode`` reads it back at apply.
"""
from __future__ import annotations

from kvcore import _ext

_proposer = _ext.load("proposer")   # compiled, or its twin under KVCORE_PURE_PYTHON=1
Proposer, decode = _proposer.Proposer, _proposer.decode_entry_data

OP_PUT = 1                # PutRequest
OP_DELETE = 2             # DeleteRangeRequest
OP_TXN = 3                # TxnRequest
OP_COMPACT = 4            # CompactionRequest
OP_LEASE_GRANT = 5        # LeaseGrantRequest (ID chosen by the proposing member)
OP_LEASE_REVOKE = 6       # LeaseRevokeRequest
OP_LEASE_CHECKPOINT = 7   # LeaseCheckpointRequest
OP_MEMBER_ATTR = 8        # JSON {"id", "name", "clientURLs"} (etcd's publish)
OP_AUTH = 9               # u8 index into services.auth.AUTH_OPS + that etcd request
OP_ALARM = 10             # AlarmRequest (ACTIVATE / DEACTIVATE)
OP_STAMPED = 11           # u64 auth revision, u16 user length, user, u8 op, that op's
                          # payload: a checked request and its caller (auth/caller.py)
OP_V2 = 12                # a v2 keys request as JSON (services/v2.py)

__all__ = ["Proposer", "decode"] + [n for n in dir() if n.startswith("OP_")]
