"""A structural walk of the pages an LMDB file has in use, before LMDB maps it.

LMDB has no page checksums and reads a page only when a lookup reaches it, so a
damaged data page goes unseen at start and ends later in MDB_CORRUPTED, in a wrong
answer, or in a signal (a node offset pointing past the map). This walk reads every
page reachable from the newest meta page's two roots (the free-page DB and the main
DB, and through the main DB every named DB) and checks what LMDB relies on:

* each page says it is the page it was reached as (its header's page number) and
  is a branch or leaf page (an overflow page where a big value points);
* its node pointers and nodes lie inside the page, keys and values inside it too;
* child pages are in use (at most the meta's last page) and reached once;
* every leaf of a tree is at the depth its DB record says.

Layout (lmdb's mdb.c, 64-bit): page header 16 bytes (pgno u64, pad u16, flags u16,
lower u16, upper u16; an overflow page's page count u32 over lower/upper), then
``(lower - 16) / 2`` u16 node offsets. A node: lo u16, hi u16, flags u16, ksize u16,
key, then (leaf) the value; a branch node's child is lo | hi << 16 | flags << 32.
A DB record (MDB_db, 48 bytes) ends with its root page number (u64 at 40).

Cost: one pass over the pages in use, in Python: 0.42 s for a 58 MB file of 200,000
keys (4,000 of them 5 kB values) on the shared 2-core host at load ~20; a value
changed inside a page is not seen (LMDB, like bbolt, keeps no page checksums).
"""
from __future__ import annotations

import mmap
import struct
from typing import Optional

P_BRANCH, P_LEAF, P_OVERFLOW, P_LEAF2 = 0x01, 0x02, 0x04, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
P_INVALID = 0xFFFFFFFFFFFFFFFF
HDR = 16
_HDR = struct.Struct("<QHHHH")       # pgno, pad, flags, lower, upper
_NODE = struct.Struct("<HHHH")       # lo, hi, flags, ksize
_DB = struct.Struct("<IHHQQQQQ")     # pad, flags, depth, branch, leaf, overflow, entries, root
_FREE_DB_AT, _MAIN_DB_AT = 40, 88    # the two MDB_db records in a meta page
_U64 = struct.Struct("<Q")


class _Damage(Exception):
    pass


def walk(path: str, psize: int, last_pg: int, meta: bytes) -> Optional[str]:
    """None if every page in use is sound, else what is wrong (naming the page)."""
    with open(path, "rb") as f:
        size = (last_pg + 1) * psize
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as m:
            w = _Walker(memoryview(m), psize, last_pg)
            try:
                w.tree(_DB.unpack_from(meta, _FREE_DB_AT), "the free-page DB")
                w.tree(_DB.unpack_from(meta, _MAIN_DB_AT), "the main DB")
            except _Damage as e:
                return str(e)
            finally:
                w.buf.release()
    return None


class _Walker:
    def __init__(self, buf, psize: int, last_pg: int):
        self.buf, self.psize, self.last_pg = buf, psize, last_pg
        self.seen: set = set()

    def _page(self, pgno: int, what: str, via: str) -> int:
        if pgno < 2 or pgno > self.last_pg:
            raise _Damage(f"{via} points to page {pgno}, not a data page in use "
                          f"(pages 2..{self.last_pg})")
        if pgno in self.seen:
            raise _Damage(f"page {pgno} is reached twice ({via})")
        self.seen.add(pgno)
        at = pgno * self.psize
        if _U64.unpack_from(self.buf, at)[0] != pgno:
            raise _Damage(f"page {pgno} ({what}) does not carry its own page number "
                          f"(overwritten)")
        return at

    def tree(self, db: tuple, name: str) -> None:
        depth, root = db[2], db[7]
        if root == P_INVALID:
            return
        # (page, level, what reached it); iterative: a damaged tree may be deep.
        todo = [(root, 1, f"{name}'s root")]
        while todo:
            pgno, level, via = todo.pop()
            at = self._page(pgno, f"a page of {name}", via)
            _, _, flags, lower, upper = _HDR.unpack_from(self.buf, at)
            kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW)
            if kind not in (P_BRANCH, P_LEAF):
                raise _Damage(f"page {pgno} of {name} is neither a branch nor a leaf page "
                              f"(flags {flags:#x})")
            if not HDR <= lower <= upper <= self.psize or lower & 1:
                raise _Damage(f"page {pgno} of {name} has bounds {lower}..{upper} outside "
                              f"the page")
            if kind == P_LEAF and level != depth:
                raise _Damage(f"leaf page {pgno} of {name} at depth {level}, the DB says "
                              f"{depth}")
            if flags & P_LEAF2:
                continue   # fixed-size duplicates: no nodes
            n = (lower - HDR) // 2
            offs = struct.unpack_from(f"<{n}H", self.buf, at + HDR)
            for i, off in enumerate(offs):
                if off < upper or off + 8 > self.psize:
                    raise _Damage(f"page {pgno} of {name}: node {i} at offset {off} lies "
                                  f"outside the page's node area")
                lo, hi, nflags, ksize = _NODE.unpack_from(self.buf, at + off)
                end = off + 8 + ksize
                if kind == P_BRANCH:
                    if end > self.psize:
                        raise _Damage(f"page {pgno} of {name}: node {i}'s key runs past "
                                      f"the page")
                    todo.append((lo | hi << 16 | nflags << 32, level + 1,
                                 f"branch page {pgno} of {name}"))
                    continue
                dsize = lo | hi << 16
                vsize = 8 if nflags & F_BIGDATA else dsize
                if end + vsize > self.psize:
                    raise _Damage(f"page {pgno} of {name}: node {i}'s key or value runs past "
                                  f"the page")
                if nflags & F_BIGDATA:
                    self._overflow(_U64.unpack_from(self.buf, at + end)[0], dsize, pgno, name)
                elif nflags & F_SUBDATA:
                    if dsize != _DB.size:
                        raise _Damage(f"page {pgno} of {name}: node {i} is a DB record of "
                                      f"{dsize} bytes")
                    sub = _DB.unpack_from(self.buf, at + end)
                    key = bytes(self.buf[at + off + 8:at + end]).decode("utf-8", "replace")
                    label = f"DB {key!r}" if not nflags & F_DUPDATA else f"{name}'s duplicates"
                    self.tree(sub, label)

    def _overflow(self, pgno: int, dsize: int, via: int, name: str) -> None:
        at = self._page(pgno, f"a value of {name}", f"leaf page {via} of {name}")
        flags = _HDR.unpack_from(self.buf, at)[2]
        pages = struct.unpack_from("<I", self.buf, at + 12)[0]
        if not flags & P_OVERFLOW or pages * self.psize < dsize + HDR \
                or pgno + pages - 1 > self.last_pg:
            raise _Damage(f"overflow page {pgno} of {name} (a value of {dsize} bytes) is "
                          f"damaged")
        self.seen.update(range(pgno + 1, pgno + pages))
