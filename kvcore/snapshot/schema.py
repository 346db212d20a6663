"""etcd 3.5's backend schema (server/mvcc/buckets, revision.go, lease, auth, membership).

Buckets and their keys:
  key              17-byte revision main u64 BE | '_' | sub u64 BE (+ 't' for a
                   tombstone) -> mvccpb.KeyValue (a tombstone's holds only the key)
  meta             consistent_index, term (u64 BE); scheduledCompactRev,
                   finishedCompactRev (17-byte revisions); confState (raftpb JSON)
  lease            lease id i64 BE -> leasepb.Lease{ID, TTL, RemainingTTL}
  alarm            pb.AlarmMember bytes -> empty
  auth             authEnabled ([1] / [0]), authRevision (u64 BE)
  authUsers        name -> authpb.User;  authRoles: name -> authpb.Role
  members          member id as lowercase hex -> JSON {id, peerURLs, name, clientURLs}
  members_removed  member id as lowercase hex -> "removed"
  cluster          clusterVersion -> "3.5.0"
"""
from __future__ import annotations

import json
import struct

BUCKETS = (b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"key", b"lease",
           b"members", b"members_removed", b"meta")

META_CONSISTENT_INDEX = b"consistent_index"
META_TERM = b"term"
META_SCHEDULED_COMPACT = b"scheduledCompactRev"
META_FINISHED_COMPACT = b"finishedCompactRev"
META_CONF_STATE = b"confState"
AUTH_ENABLED = b"authEnabled"
AUTH_REVISION = b"authRevision"
CLUSTER_VERSION = b"clusterVersion"
ETCD_CLUSTER_VERSION = b"3.5.0"

_U64 = struct.Struct(">Q")
_REV = struct.Struct(">Q")


def rev_bytes(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    return _U64.pack(main) + b"_" + _U64.pack(sub) + (b"t" if tombstone else b"")


def parse_rev(b: bytes) -> tuple[int, int, bool]:
    """-> (main, sub, tombstone) of a 17/18-byte revision key."""
    return _U64.unpack_from(b, 0)[0], _U64.unpack_from(b, 9)[0], len(b) > 17 and b[17:18] == b"t"


def u64(v: int) -> bytes:
    return _U64.pack(v)


def from_u64(b: bytes) -> int:
    return _U64.unpack(b)[0]


# ---- the few protobuf messages the schema stores, hand-encoded (varint fields) ----

def _varint(v: int) -> bytes:
    v &= 0xFFFFFFFFFFFFFFFF           # int64 negatives: ten bytes, as protobuf does
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _varint_fields(*fields: tuple) -> bytes:
    return b"".join(bytes([n << 3]) + _varint(v) for n, v in fields if v)


def _read_varints(b: bytes) -> dict:
    out, i = {}, 0
    while i < len(b):
        tag = b[i]
        i += 1
        v = shift = 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                break
        out[tag >> 3] = v
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def lease_value(lease_id: int, ttl: int, remaining: int) -> bytes:
    """leasepb.Lease{ID, TTL, RemainingTTL}."""
    return _varint_fields((1, lease_id), (2, ttl), (3, remaining))


def parse_lease(b: bytes) -> tuple[int, int, int]:
    f = _read_varints(b)
    return _signed(f.get(1, 0)), _signed(f.get(2, 0)), _signed(f.get(3, 0))


def alarm_key(member_id: int, alarm: int) -> bytes:
    """pb.AlarmMember{MemberID, Alarm}."""
    return _varint_fields((1, member_id), (2, alarm))


def parse_alarm(b: bytes) -> tuple[int, int]:
    f = _read_varints(b)
    return f.get(1, 0), f.get(2, 0)


def member_key(member_id: int) -> bytes:
    return b"%x" % member_id


def member_value(member_id: int, name: str, peer_urls: list, client_urls: list,
                 is_learner: bool = False) -> bytes:
    """etcd's json.Marshal(Member): RaftAttributes then Attributes, omitempty fields."""
    d = {"id": member_id, "peerURLs": list(peer_urls)}
    if is_learner:
        d["isLearner"] = True
    if name:
        d["name"] = name
    if client_urls:
        d["clientURLs"] = list(client_urls)
    return json.dumps(d, separators=(",", ":")).encode()


def conf_state_json(voters, learners=(), voters_outgoing=(), learners_next=(),
                    auto_leave: bool = False) -> bytes:
    d = {}
    for name, ids in (("voters", voters), ("learners", learners),
                      ("voters_outgoing", voters_outgoing), ("learners_next", learners_next)):
        if ids:
            d[name] = list(ids)
    d["auto_leave"] = bool(auto_leave)
    return json.dumps(d, separators=(",", ":")).encode()
