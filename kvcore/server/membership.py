"""Cluster membership: member and cluster IDs derived exactly as etcd derives them
(so a member started with etcd's flags reports the IDs etcd would), and the member
records kept in LMDB and changed only through the log."""
from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Optional

_ID = struct.Struct(">Q")
REMOVED_PREFIX = b"removed/"


def member_id(peer_urls: list[str], cluster_token: str, now: Optional[float] = None) -> int:
    b = "".join(sorted(peer_urls)).encode() + cluster_token.encode()
    if now is not None:
        b += str(int(now)).encode()
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


def cluster_id(member_ids: list[int]) -> int:
    b = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list
    client_urls: list = field(default_factory=list)
    is_learner: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "name": self.name, "peerURLs": self.peer_urls,
                           "clientURLs": self.client_urls, "isLearner": self.is_learner},
                          sort_keys=True).encode()

    # The conf change context carries the member record (etcd's RaftAttributes).
    context = to_json

    @classmethod
    def from_json(cls, b: bytes) -> "Member":
        d = json.loads(b)
        return cls(d["id"], d.get("name", ""), list(d.get("peerURLs", [])),
                   list(d.get("clientURLs", [])), bool(d.get("isLearner", False)))


def initial_members(initial_cluster: dict[str, list[str]], token: str) -> list[Member]:
    return [Member(member_id(urls, token), name, list(urls)) for name, urls in initial_cluster.items()]


class Membership:
    """The members of the cluster, mirrored in LMDB's ``members`` database."""

    def __init__(self, backend):
        self.b = backend
        self.members: dict[int, Member] = {}
        self.removed: set[int] = set()
        # Reads and writes by etcd's v2-store action names (where etcd 3.5 keeps its
        # membership): etcd_debugging_store_reads_total / _writes_total.
        self.reads: dict[str, int] = {}
        self.writes: dict[str, int] = {}
        with backend.begin_read() as txn:
            for k, v in txn.cursor(db=backend.members):
                if k.startswith(REMOVED_PREFIX):
                    self.removed.add(_ID.unpack(k[len(REMOVED_PREFIX):])[0])
                else:
                    m = Member.from_json(v)
                    self.members[m.id] = m

    def _count(self, d: dict, action: str) -> None:
        d[action] = d.get(action, 0) + 1

    def save(self, txn, m: Member) -> None:
        self._count(self.writes, "set" if m.id in self.members else "create")
        self.members[m.id] = m
        txn.put(_ID.pack(m.id), m.to_json(), db=self.b.members)

    def remove(self, txn, mid: int) -> None:
        self._count(self.writes, "delete")
        self.members.pop(mid, None)
        self.removed.add(mid)
        txn.delete(_ID.pack(mid), db=self.b.members)
        txn.put(REMOVED_PREFIX + _ID.pack(mid), b"", db=self.b.members)

    def sorted(self) -> list[Member]:
        self._count(self.reads, "getRecursive")
        return [self.members[i] for i in sorted(self.members)]

    def by_peer_urls(self, urls: list[str]) -> Optional[Member]:
        want = sorted(urls)
        for m in self.members.values():
            if sorted(m.peer_urls) == want:
                return m
        return None


def new_member_id(peer_urls: list[str]) -> int:
    """ID of a member added at run time: etcd's MemberAdd hashes the peer URLs with
    an empty cluster name and the current second."""
    return member_id(peer_urls, "", time.time())
