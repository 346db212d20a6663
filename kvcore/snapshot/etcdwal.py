"""A stopped etcd member's WAL (member/wal/*.wal), read far enough to tell whether it
holds committed v3 changes its backend has not got yet (after a crash: etcd commits
its backend in batches and replays the WAL at start).

Record framing (etcd's wal/decoder.go): a little-endian int64 whose low 56 bits are
the record's length and, when negative, bits 56-58 its padding; then a walpb.Record
{type=1, crc=2, data=3}. Types: 1 metadata, 2 raftpb.Entry {Type=1, Term=2, Index=3,
Data=4}, 3 raftpb.HardState {term=1, vote=2, commit=3}, 4 crc, 5 snapshot. A length of
0 is preallocated space: the end of a file. A later entry at an index replaces the
earlier one and drops those after it (Raft's conflict rule)."""
from __future__ import annotations

import os
import struct
from typing import Iterator

_LEN = struct.Struct("<q")
ENTRY, STATE = 2, 3

# etcdserverpb.InternalRaftRequest fields that change the v3 store, leases, alarms or
# auth (not v2 requests, reads, or membership bookkeeping). etcd 3.5 records every
# applied entry in its backend's consistent index; 3.4 only the write transactions
# that changed keys, so there only a Put tells that an entry never reached the backend.
V3_WRITES_35 = frozenset({4, 5, 6, 7, 8, 9, 10, 11, 1000, 1011, 1100, 1101, 1103, 1104,
                          1105, 1200, 1201, 1203, 1204})
V3_WRITES_34 = frozenset({4})


def fields(b: bytes) -> Iterator[tuple[int, object]]:
    """(field number, value) of a protobuf message: ints for varints and fixed-size
    fields, bytes for length-delimited ones."""
    i, n = 0, len(b)
    while i < n:
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wt == 2:
            ln, i = _varint(b, i)
            v, i = b[i:i + ln], i + ln
        elif wt == 5:
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"protobuf wire type {wt} not supported")
        yield num, v


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def records(wal_dir: str) -> Iterator[tuple[int, bytes]]:
    """(type, data) of every record, oldest segment first; a torn tail ends it."""
    names = sorted(n for n in os.listdir(wal_dir) if n.endswith(".wal"))
    for name in names:
        with open(os.path.join(wal_dir, name), "rb") as f:
            data = f.read()
        off = 0
        while off + 8 <= len(data):
            (length,) = _LEN.unpack_from(data, off)
            if length == 0:
                break
            size = length & ((1 << 56) - 1)
            pad = (length >> 56) & 0x7 if length < 0 else 0
            body = data[off + 8:off + 8 + size]
            if len(body) < size:
                break
            off += 8 + size + pad
            rec = dict(fields(body))
            yield rec.get(1, 0), rec.get(3, b"")


def committed_v3_writes_after(wal_dir: str, index: int, writes=V3_WRITES_35) -> int:
    """How many committed entries above ``index`` carry one of ``writes``."""
    entries: dict = {}
    commit = 0
    for rtype, data in records(wal_dir):
        if rtype == ENTRY:
            e = dict(fields(data))
            i = e.get(3, 0)
            for later in [k for k in entries if k >= i]:
                del entries[later]
            entries[i] = e.get(4, b"")
        elif rtype == STATE:
            commit = dict(fields(data)).get(3, commit) or commit
    count = 0
    for i, payload in entries.items():
        if index < i <= commit and payload and _is_v3_write(payload, writes):
            count += 1
    return count


def _is_v3_write(payload: bytes, writes) -> bool:
    """An InternalRaftRequest (it always carries its header, field 100, which etcd's
    v2 requests and conf changes do not) with a v3 change in it."""
    try:
        nums = {num for num, _ in fields(payload)}
    except (ValueError, IndexError):
        return False
    return 100 in nums and bool(nums & writes)
