"""Checks of the data files before they are used, so damage ends in a message
naming the file and the fix instead of a signal (SIGBUS from a truncated map) or
a traceback (LMDB's MDB_CORRUPTED / MDB_INVALID). The pages in use are walked too
(kvcore/storage/lmdbwalk.py): LMDB reads a damaged data page lazily, so the member
would start and fail (or worse, read garbage) at the first request touching it.

LMDB's file starts with two meta pages (pages 0 and 1); LMDB uses the one with the
higher transaction id. Each holds the page size, the last page in use and the
transaction id (lmdb's MDB_meta, 64-bit layout):

  page header 16 bytes | magic u32 0xBEEFC0DE | version u32 | address u64 |
  mapsize u64 | 2 x MDB_db (48 bytes; the first's md_pad is the page size) |
  last_pg u64 | txnid u64
"""
from __future__ import annotations

import os
import struct

from kvcore.storage import lmdbwalk

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
_META = struct.Struct("<II")          # magic, version at offset 16
_PSIZE_AT = 16 + 4 + 4 + 8 + 8         # the first MDB_db's md_pad: the page size
_LAST_PG_AT = _PSIZE_AT + 2 * 48
_U64 = struct.Struct("<Q")
_P_META = 0x08                         # page flag of a meta page

RESTORE_HINT = ("restore the member's data from a snapshot "
                "('kvcoreutl snapshot restore' into a new --data-dir), or remove this "
                "member and add it back so it receives the data from the leader")


class DataFileError(Exception):
    """A data file is damaged; the message names the file and the fix."""


def _meta_page(buf: bytes, at: int):
    """-> (page size, last page, txn id) of the meta page at ``at``, or None if it
    is not a valid one."""
    if len(buf) < at + _LAST_PG_AT + 16:
        return None
    pgno = _U64.unpack_from(buf, at)[0]
    flags = struct.unpack_from("<H", buf, at + 10)[0]
    magic, version = _META.unpack_from(buf, at + 16)
    if magic != MAGIC or version != DATA_VERSION or not flags & _P_META:
        return None
    psize = struct.unpack_from("<I", buf, at + _PSIZE_AT)[0]
    if psize < 512 or psize > 65536 or psize & (psize - 1) or pgno != (at // psize if at else 0):
        return None
    last_pg, txnid = struct.unpack_from("<QQ", buf, at + _LAST_PG_AT)
    return psize, last_pg, txnid


def check_lmdb(path: str, pages: bool = True) -> None:
    """Verify the LMDB file ``path`` (data.mdb) well enough to open it safely:
    both meta pages valid, the file as long as the pages they say are in use, and
    (``pages``) every page in use sound. A missing file is fine (a new member).
    Raises DataFileError."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return
    if size == 0:
        return   # created, never written: LMDB initialises it
    with open(path, "rb") as f:
        head = f.read(65536 * 2)
    first = _meta_page(head, 0)
    if first is None:
        raise DataFileError(f"{path}: not a valid LMDB data file (first meta page damaged "
                            f"or the file overwritten); {RESTORE_HINT}")
    psize = first[0]
    second = _meta_page(head, psize)
    if second is None:
        raise DataFileError(f"{path}: the second LMDB meta page is damaged; {RESTORE_HINT}")
    newest = 0 if first[2] >= second[2] else psize
    last_pg = max((first, second), key=lambda m: m[2])[1]
    need = (last_pg + 1) * psize
    if size < need:
        raise DataFileError(f"{path}: truncated: {size} bytes, but its pages in use end at "
                            f"byte {need}; {RESTORE_HINT}")
    problem = pages and lmdbwalk.walk(path, psize, last_pg, head[newest:newest + psize])
    if problem:
        raise DataFileError(f"{path}: damaged data page: {problem}; {RESTORE_HINT}")


def check_wal_covers(applied: int, wal_last: int, wal_dir: str, db_file: str) -> None:
    """Entries are applied only once persisted in the WAL, so a backend whose applied
    index is past the WAL's last entry means the WAL lost its end (a cut file, a
    deleted segment). Starting would serve reads and time out every write forever
    (Raft's log ends before what the state machine holds): refuse instead."""
    if applied > wal_last:
        raise DataFileError(
            f"{wal_dir}: the write-ahead log ends at index {wal_last} but {db_file} has "
            f"applied index {applied}: entries {wal_last + 1}..{applied} are missing from "
            f"the WAL (a segment cut short or removed); {RESTORE_HINT}")
