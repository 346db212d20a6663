"""Recognise a data dir written by etcd itself (a bbolt file at member/snap/db, etcd's
WAL records in member/wal), so kvcore started on it stops with the command that takes
it over instead of calling etcd's files corrupt. Nothing here writes.

etcd's WAL record: int64 little-endian frame (low 56 bits: length; high bits: padding),
then walpb.Record; every segment starts with Record{type: crcType (4), crc}, which
encodes as 08 04 10 <crc varint>.
"""
from __future__ import annotations

import os
import struct

from kvcore.bbolt.format import MAGIC as BBOLT_MAGIC

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BBOLT_MAGIC_AT = 16        # after the page header
_ETCD_CRC_RECORD = b"\x08\x04\x10"


def _is_bbolt(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(_BBOLT_MAGIC_AT + 4)
    except OSError:
        return False
    return len(head) == 20 and _U32.unpack_from(head, _BBOLT_MAGIC_AT)[0] == BBOLT_MAGIC


def _is_etcd_wal_segment(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(11)
    except OSError:
        return False
    if len(head) < 11:
        return False
    length = _U64.unpack_from(head)[0] & ((1 << 56) - 1)
    return 0 < length < 64 and head[8:11] == _ETCD_CRC_RECORD


def etcd_files(data_dir: str, wal_dir: str = "") -> list[str]:
    """The etcd-written files found where kvcore keeps its own: [] for a kvcore or
    empty data dir."""
    found = []
    db = os.path.join(data_dir, "member", "snap", "db")
    if os.path.isfile(db) and _is_bbolt(db):
        found.append(db)
    wal = wal_dir or os.path.join(data_dir, "member", "wal")
    if os.path.isdir(wal):
        segs = sorted(n for n in os.listdir(wal) if n.endswith(".wal"))
        if segs and _is_etcd_wal_segment(os.path.join(wal, segs[0])):
            found.append(os.path.join(wal, segs[0]))
    return found


def refusal(data_dir: str, found: list[str]) -> str:
    """The message kvcore exits with: what is etcd's and the command that takes it over."""
    src = data_dir if any(f.endswith(os.path.join("snap", "db")) for f in found) \
        else "<etcd's data dir>"
    return (f"kvcore: found files written by etcd ({', '.join(found)}); kvcore keeps its "
            "own format and does not open etcd's. Take a stopped etcd member's data over "
            f"with 'kvcoreutl migrate --etcd-data-dir {src} --data-dir <new dir>' and "
            "start kvcore on the new dir; etcd's files are left as they are")
