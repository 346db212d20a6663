"""Streaming bbolt writer: top-level buckets of sorted items -> a valid bbolt file."""
from __future__ import annotations

from typing import BinaryIO, Iterable, Optional

from kvcore.bbolt.format import (BRANCH, BRANCH_ELEM, BUCKET, BUCKET_LEAF_FLAG, ELEM_SIZE,
                                 FREELIST, HEADER_SIZE, LEAF, LEAF_ELEM, PAGE_HEADER,
                                 PAGE_SIZE, meta_page)


class Writer:
    """Writes a bbolt database to ``f`` (a seekable binary file, written from its start).

    ``bucket(name, items)`` adds a top-level bucket from (key, value) pairs in strictly
    increasing key order; ``close()`` writes the root bucket, the freelist and the two
    meta pages. Pages are written as soon as they are full."""

    def __init__(self, f: BinaryIO, page_size: int = PAGE_SIZE, txid: int = 1):
        self.f = f
        self.page_size = page_size
        self.txid = txid
        self.next_pgid = 2                    # pages 0, 1: meta, written by close()
        self.buckets: dict[bytes, int] = {}   # name -> root pgid
        self.f.seek(0)
        self.f.write(b"\0" * (2 * page_size))

    # ---- pages ----

    def _emit(self, flags: int, count: int, body: bytes) -> int:
        pgid = self.next_pgid
        size = HEADER_SIZE + len(body)
        npages = -(-size // self.page_size)
        self.f.write(b"".join((PAGE_HEADER.pack(pgid, flags, count, npages - 1), body,
                               bytes(npages * self.page_size - size))))
        self.next_pgid += npages
        return pgid

    def _leaf(self, items: list, flags: int = 0) -> int:
        return self._emit(LEAF, len(items), leaf_body(items, flags))

    def _branch(self, entries: list) -> int:
        n = len(entries)
        heads = []
        data = []
        pos = n * ELEM_SIZE
        for i, (k, pgid) in enumerate(entries):
            heads.append(BRANCH_ELEM.pack(pos - i * ELEM_SIZE, len(k), pgid))
            data.append(k)
            pos += len(k)
        return self._emit(BRANCH, n, b"".join(heads) + b"".join(data))

    # ---- trees ----

    def tree(self, items: Iterable[tuple], flags: int = 0) -> int:
        """Writes a B+tree of sorted (key, value) items; returns its root pgid."""
        limit = self.page_size - HEADER_SIZE
        levels: list[list] = []     # pending (first key, pgid) per branch level
        sizes: list[int] = []
        leaf: list = []
        size = 0
        last: Optional[bytes] = None

        def push(level: int, key: bytes, pgid: int) -> None:
            if level == len(levels):
                levels.append([])
                sizes.append(0)
            need = ELEM_SIZE + len(key)
            if levels[level] and sizes[level] + need > limit:
                push(level + 1, levels[level][0][0], self._branch(levels[level]))
                levels[level] = []
                sizes[level] = 0
            levels[level].append((key, pgid))
            sizes[level] += need

        for k, v in items:
            if last is not None and k <= last:
                raise ValueError("bbolt items must be in strictly increasing key order")
            last = k
            need = ELEM_SIZE + len(k) + len(v)
            if leaf and size + need > limit:
                push(0, leaf[0][0], self._leaf(leaf, flags))
                leaf = []
                size = 0
            leaf.append((k, v))
            size += need
        if not levels:
            return self._leaf(leaf, flags)    # one page (possibly empty) is the root
        if leaf:
            push(0, leaf[0][0], self._leaf(leaf, flags))
        level = 0
        while True:                           # close the pending pages bottom-up
            top = level == len(levels) - 1
            if top and len(levels[level]) == 1:
                return levels[level][0][1]
            pgid = self._branch(levels[level])
            if top:
                return pgid
            push(level + 1, levels[level][0][0], pgid)
            level += 1

    def bucket(self, name: bytes, items: Iterable[tuple]) -> None:
        if name in self.buckets:
            raise ValueError(f"bucket {name!r} written twice")
        self.buckets[name] = self.tree(items)

    def close(self) -> int:
        """Finishes the file; returns its size in bytes."""
        root = self.tree(((n, BUCKET.pack(pg, 0)) for n, pg in sorted(self.buckets.items())),
                         BUCKET_LEAF_FLAG)
        freelist = self._emit(FREELIST, 0, b"")
        hwm = self.next_pgid
        self.f.seek(0)
        for i in (0, 1):
            self.f.write(meta_page(i, self.page_size, root, freelist, hwm, self.txid - 1 + i))
        self.f.seek(hwm * self.page_size)
        self.f.flush()
        return hwm * self.page_size


def leaf_body(items: list, flags: int = 0) -> bytes:
    """A leaf page's elements and data (without the page header)."""
    n = len(items)
    heads = []
    data = []
    pos = n * ELEM_SIZE
    for i, (k, v) in enumerate(items):
        heads.append(LEAF_ELEM.pack(flags, pos - i * ELEM_SIZE, len(k), len(v)))
        data.append(k)
        data.append(v)
        pos += len(k) + len(v)
    return b"".join(heads) + b"".join(data)
