"""bbolt's on-disk structures (see the package docstring)."""
from __future__ import annotations

import struct

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2

BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFFFFFFFFFFFFFF

PAGE_HEADER = struct.Struct("<QHHI")          # id, flags, count, overflow
LEAF_ELEM = struct.Struct("<IIII")            # flags, pos, ksize, vsize
BRANCH_ELEM = struct.Struct("<IIQ")           # pos, ksize, pgid
BUCKET = struct.Struct("<QQ")                 # root pgid, sequence
META_BODY = struct.Struct("<IIIIQQQQQ")       # magic .. txid (56 bytes)
U64 = struct.Struct("<Q")
HEADER_SIZE = PAGE_HEADER.size
ELEM_SIZE = 16


class InvalidDatabase(Exception):
    """Not a bbolt file, or a damaged one (bbolt's ErrInvalid / ErrChecksum)."""


def fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def meta_page(pgid: int, page_size: int, root: int, freelist: int, hwm: int,
              txid: int) -> bytes:
    body = META_BODY.pack(MAGIC, VERSION, page_size, 0, root, 0, freelist, hwm, txid)
    page = PAGE_HEADER.pack(pgid, META, 0, 0) + body + U64.pack(fnv64a(body))
    return page.ljust(page_size, b"\0")
