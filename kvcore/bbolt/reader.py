"""bbolt reader: walks the buckets of a bbolt file through mmap (read-only)."""
from __future__ import annotations

import mmap
import os
from typing import Iterator, Optional

from kvcore.bbolt.format import (BRANCH, BRANCH_ELEM, BUCKET, BUCKET_LEAF_FLAG, ELEM_SIZE,
                                 HEADER_SIZE, LEAF, LEAF_ELEM, MAGIC, META_BODY,
                                 PAGE_HEADER, U64, VERSION, InvalidDatabase, fnv64a)


class Reader:
    """``Reader(path)``: the top-level buckets of a bbolt file and their items."""

    def __init__(self, path: str):
        self._fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(self._fd).st_size
            if size < 2 * 1024:
                raise InvalidDatabase("invalid database")
            self._mm = mmap.mmap(self._fd, 0, prot=mmap.PROT_READ)
        except Exception:
            os.close(self._fd)
            raise
        self.file_size = size
        self.page_size, self.root, self.freelist, self.hwm, self.txid = self._meta()
        if self.hwm * self.page_size > size:
            self.close()
            raise InvalidDatabase("file size too small")

    def _meta(self) -> tuple:
        """The valid meta page with the higher txid (bbolt's choice)."""
        first = self._parse_meta(0)
        second = self._parse_meta(first[0] if first else 4096)
        valid = [m for m in (first, second) if m is not None]
        if not valid:
            self.close()
            raise InvalidDatabase("invalid database")
        return max(valid, key=lambda m: m[4])

    def _parse_meta(self, off: int) -> Optional[tuple]:
        if off + HEADER_SIZE + 64 > len(self._mm):
            return None
        body = self._mm[off + HEADER_SIZE: off + HEADER_SIZE + META_BODY.size]
        magic, version, psize, _, root, _, freelist, hwm, txid = META_BODY.unpack(body)
        (checksum,) = U64.unpack_from(self._mm, off + HEADER_SIZE + META_BODY.size)
        if magic != MAGIC or version != VERSION or checksum != fnv64a(body):
            return None
        return psize, root, freelist, hwm, txid

    def close(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
            self._mm = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def size(self) -> int:
        """Bytes in use by the tree's last transaction (bbolt's tx.Size())."""
        return self.hwm * self.page_size

    # ---- walking ----

    def _items(self, buf, base: int) -> Iterator[tuple]:
        """(flags, key, value) of the tree whose root page is at ``buf[base:]``, in
        order: branch pages are walked with an explicit stack, leaves unpacked whole."""
        stack = [(buf, base)]
        mm = self._mm
        while stack:
            buf, base = stack.pop()
            pgid, flags, count, _ = PAGE_HEADER.unpack_from(buf, base)
            e = base + HEADER_SIZE
            heads = buf[e:e + count * ELEM_SIZE]
            if flags & LEAF:
                start = e
                for f, pos, ks, vs in LEAF_ELEM.iter_unpack(heads):
                    k = start + pos
                    yield f, buf[k:k + ks], buf[k + ks:k + ks + vs]
                    start += ELEM_SIZE
            elif flags & BRANCH:
                children = [self._page(c) for _, _, c in BRANCH_ELEM.iter_unpack(heads)]
                stack.extend((mm, off) for off in reversed(children))
            else:
                raise InvalidDatabase(f"page {pgid}: invalid page type: {flags}")

    def _page(self, pgid: int) -> int:
        if pgid < 2 or pgid >= self.hwm:
            raise InvalidDatabase(f"page {pgid}: out of bounds: {self.hwm}")
        return pgid * self.page_size

    def _bucket_items(self, value: bytes) -> Iterator[tuple]:
        root, _ = BUCKET.unpack_from(value)
        if root == 0:
            return self._items(value, BUCKET.size)     # inline bucket
        return self._items(self._mm, self._page(root))

    def buckets(self) -> list[bytes]:
        return [k for f, k, _ in self._items(self._mm, self._page(self.root))
                if f & BUCKET_LEAF_FLAG]

    def bucket(self, name: bytes) -> Optional[Iterator[tuple]]:
        """(key, value) pairs of a top-level bucket in key order (nested buckets' values
        are their raw bucket headers); None when there is no such bucket."""
        for f, k, v in self._items(self._mm, self._page(self.root)):
            if k == name and f & BUCKET_LEAF_FLAG:
                return ((k2, v2) for _, k2, v2 in self._bucket_items(v))
        return None
