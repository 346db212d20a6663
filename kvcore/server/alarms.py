"""Alarms and the space quota (etcd's alarm store and quota applier).

An alarm is (member ID, alarm type), kept in the backend's ``alarm`` database so it
survives restarts and travels with snapshots; alarms change only through the log,
so every member has the same set. While a NOSPACE alarm is raised, Put, a Txn that
writes and LeaseGrant fail with "etcdserver: mvcc: database space exceeded" when
applied (etcd's capped applier); reads, deletes, compaction and alarm disarm work.

The quota is checked on the member that receives a write, before proposing it: if
the backend's size plus the request would exceed ``--quota-backend-bytes``, the
request fails and a NOSPACE alarm for this member is proposed, as etcd does.
Departure: etcd measures the database file, which only defragmentation shrinks;
an LMDB file never shrinks but reuses freed pages, so the size here is the pages
the databases use (a compaction makes room again; defragmentation is not needed).
"""
from __future__ import annotations

import struct

from kvcore.api import rpc_pb2

_KEY = struct.Struct(">QI")   # member ID, alarm type

NOSPACE = rpc_pb2.NOSPACE
CORRUPT = rpc_pb2.CORRUPT


class Alarms:
    def __init__(self, backend):
        self.b = backend
        self.active: set[tuple[int, int]] = set()
        with backend.begin_read() as txn:
            for k, _ in txn.cursor(db=backend.alarm):
                self.active.add(_KEY.unpack(k))

    @property
    def nospace(self) -> bool:
        return any(t == NOSPACE for _, t in self.active)

    @property
    def corrupt(self) -> bool:
        return any(t == CORRUPT for _, t in self.active)

    def list(self, alarm_type: int = rpc_pb2.NONE) -> list[tuple[int, int]]:
        return sorted(a for a in self.active if alarm_type == rpc_pb2.NONE or a[1] == alarm_type)

    def activate(self, txn, member: int, alarm_type: int) -> bool:
        """-> whether it was newly raised."""
        if (member, alarm_type) in self.active:
            return False
        txn.put(_KEY.pack(member, alarm_type), b"", db=self.b.alarm)
        self.active.add((member, alarm_type))
        return True

    def deactivate(self, txn, member: int, alarm_type: int) -> bool:
        """-> whether it was raised."""
        if (member, alarm_type) not in self.active:
            return False
        txn.delete(_KEY.pack(member, alarm_type), db=self.b.alarm)
        self.active.discard((member, alarm_type))
        return True

    def describe(self) -> list[str]:
        """etcd's Status errors: 'memberID:<decimal> alarm:<TYPE> '."""
        return [f"memberID:{m} alarm:{rpc_pb2.AlarmType.Name(t)} " for m, t in self.list()]


def used_bytes(backend, txn=None) -> int:
    """etcd's backend Size() for the space quota: the high-water mark of the file's
    pages. Pages freed by compaction are reused, yet they count until a defrag gives
    them back, as bbolt's do: after 'alarm disarm' a member still over its quota
    refuses the next put."""
    return backend.high_water_bytes()


def alarm_body(alarms) -> bytes:
    """An AlarmResponse's bytes without its header."""
    return rpc_pb2.AlarmResponse(alarms=[rpc_pb2.AlarmMember(memberID=m, alarm=t)
                                         for m, t in alarms]).SerializeToString()
