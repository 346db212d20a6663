"""Plain-Python twin of the compiled revision index (``kvcore._ext.revindex``).

A line-by-line transcription of etcd's ``server/mvcc/key_index.go`` (keyIndex,
generation) and ``server/mvcc/index.go`` (treeIndex), kept simple on purpose: a dict
of key -> KeyIndex plus a sorted key list searched with ``bisect``.  The compiled
B-tree must give identical answers; ``tests/unit/mvcc/test_index_compare.py`` drives
both with the same random operations.

Contract (shared with ``ext/revindex.pyx``):

* A revision is ``(main, sub)``: ``main`` is the store revision of a txn, ``sub`` the
  op's position inside it.  Revisions compare as tuples.  Methods take a revision as
  two ints and return revisions as ``(main, sub)`` tuples.
* Keys are ``bytes`` (anything else raises TypeError) and sort bytewise.
* ``end`` selects keys: ``None`` or ``b''`` -> only ``key``; ``b'\\x00'`` -> every
  key ``>= key``; otherwise ``[key, end)`` (empty if ``end <= key``).
* Revisions have ``main >= 1`` and ``sub >= 0`` (ValueError otherwise); store
  revisions start at 1 as in etcd.
* Revisions of one key must strictly increase: a put/tombstone at a revision not
  greater than the key's last modification raises ValueError (etcd panics).
* A key has generations; a generation holds ``created``, ``ver`` (its version count)
  and its revisions in ascending order.  A tombstone appends its revision to the
  current generation and opens a new empty one; tombstoning a key that is absent or
  whose current generation is empty raises KeyError (etcd's ErrRevisionNotFound).
* ``get(key, at_rev)`` -> ``(mod_main, mod_sub, create_main, create_sub, version)``
  of the newest revision with ``main <= at_rev``, or None when the key did not exist
  at ``at_rev`` (never created, deleted, or compacted away).
* ``put_version(key, main, sub)`` is ``put`` returning ``(create_main, version)`` of
  the key's generation after it (what ``get(key, main)`` then answers in fields 2, 4).
* ``revisions`` returns keys alive at ``at_rev`` in key order, at most ``limit`` of
  them when ``limit > 0``, together with the count of all alive keys in the range.
  With a single-key ``end`` the limit is ignored (as in etcd).
* ``range_since`` returns every revision ``>= (rev, 0)`` of the selected keys, sorted
  ascending; per key, when consecutive revisions share a ``main`` only the one with
  the highest ``sub`` is kept (etcd's keyIndex.since), unless ``every_sub`` (a watch's
  history: etcd reads it from the revisions, so a key put and deleted in one txn has
  both events).
* ``compact(rev)``: in every key, generations whose tombstone is ``<= rev`` are
  dropped; in the first remaining generation the revisions below the newest one with
  ``main <= rev`` are dropped, and that revision is dropped too when it is that
  generation's tombstone.  Keys left with only an empty generation are removed.
  Returns the set of revisions ``<= rev`` that stay (``available``: the backend must
  keep them).  ``keep(rev)`` returns the same set without modifying anything.
* Ownership: every returned list/set/tuple is new and belongs to the caller; the
  index keeps no reference to it and never mutates it later.
* Keys are removed only by ``compact``; ``len()`` counts keys present, including
  keys whose latest generation is empty (deleted but not compacted).
"""
from __future__ import annotations

from bisect import bisect_left, insort
from typing import Dict, List, Optional, Set, Tuple

Rev = Tuple[int, int]

_ALL = b"\x00"


class Generation:
    """Revisions of one key from its creation to (and including) its tombstone."""

    __slots__ = ("ver", "created", "revs")

    def __init__(self, ver: int = 0, created: Rev = (0, 0), revs: Optional[List[Rev]] = None):
        self.ver = ver
        self.created = created
        self.revs: List[Rev] = revs if revs is not None else []

    def is_empty(self) -> bool:
        return not self.revs

    def walk(self, f) -> int:
        """Call f on the revisions newest-first; return the index where f said False, or -1."""
        for i in range(len(self.revs) - 1, -1, -1):
            if not f(self.revs[i]):
                return i
        return -1


class KeyIndex:
    """etcd's keyIndex: the generations of one key."""

    __slots__ = ("key", "modified", "generations")

    def __init__(self, key: bytes):
        self.key = key
        self.modified: Rev = (0, 0)
        self.generations: List[Generation] = []

    def put(self, main: int, sub: int) -> None:
        rev = (main, sub)
        if main < 1 or sub < 0:
            raise ValueError(f"invalid revision {rev}: main must be >= 1 and sub >= 0")
        if not rev > self.modified:
            raise ValueError(f"put with an unexpected smaller revision {rev} <= {self.modified}"
                             f" on key {self.key!r}")
        if not self.generations:
            self.generations.append(Generation())
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def restore(self, created: Rev, modified: Rev, ver: int) -> None:
        if self.generations:
            raise ValueError(f"restore on a key with generations: {self.key!r}")
        self.modified = modified
        self.generations.append(Generation(ver, created, [modified]))

    def tombstone(self, main: int, sub: int) -> None:
        if self.is_empty():
            raise ValueError(f"tombstone on an empty keyIndex {self.key!r}")
        if self.generations[-1].is_empty():
            raise KeyError(self.key)
        self.put(main, sub)
        self.generations.append(Generation())

    def get(self, at_rev: int) -> Optional[Tuple[int, int, int, int, int]]:
        g = self.find_generation(at_rev)
        if g is None or g.is_empty():
            return None
        n = g.walk(lambda r: r[0] > at_rev)
        if n != -1:
            mod = g.revs[n]
            return (mod[0], mod[1], g.created[0], g.created[1],
                    g.ver - (len(g.revs) - n - 1))
        return None

    def since(self, rev: int, every_sub: bool = False) -> List[Rev]:
        since = (rev, 0)
        gens = self.generations
        gi = len(gens) - 1
        while gi > 0:
            g = gens[gi]
            if not g.is_empty() and since > g.created:
                break
            gi -= 1
        revs: List[Rev] = []
        last = 0
        for g in gens[gi:]:
            for r in g.revs:
                if since > r:
                    continue
                if r[0] == last and not every_sub:
                    revs[-1] = r  # only the highest sub of one main is visible
                    continue
                revs.append(r)
                last = r[0]
        return revs

    def _do_compact(self, at_rev: int, available: Set[Rev]) -> Tuple[int, int]:
        def f(r: Rev) -> bool:
            if r[0] <= at_rev:
                available.add(r)
                return False
            return True

        gens = self.generations
        gen_idx = 0
        g = gens[0]
        while gen_idx < len(gens) - 1:
            if g.revs[-1][0] > at_rev:  # tombstone after at_rev
                break
            gen_idx += 1
            g = gens[gen_idx]
        return gen_idx, g.walk(f)

    def compact(self, at_rev: int, available: Set[Rev]) -> None:
        if self.is_empty():
            raise ValueError(f"compact on an empty keyIndex {self.key!r}")
        gen_idx, rev_index = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if not g.is_empty():
            if rev_index != -1:
                g.revs = g.revs[rev_index:]
            if len(g.revs) == 1 and gen_idx != len(self.generations) - 1:
                available.discard(g.revs[0])  # the tombstone itself goes
                gen_idx += 1
        self.generations = self.generations[gen_idx:]

    def keep(self, at_rev: int, available: Set[Rev]) -> None:
        if self.is_empty():
            return
        gen_idx, rev_index = self._do_compact(at_rev, available)
        g = self.generations[gen_idx]
        if not g.is_empty():
            if rev_index == len(g.revs) - 1 and gen_idx != len(self.generations) - 1:
                available.discard(g.revs[rev_index])

    def is_empty(self) -> bool:
        return len(self.generations) == 1 and self.generations[0].is_empty()

    def find_generation(self, rev: int) -> Optional[Generation]:
        gens = self.generations
        lastg = len(gens) - 1
        cg = lastg
        while cg >= 0:
            g = gens[cg]
            if not g.revs:
                cg -= 1
                continue
            if cg != lastg and g.revs[-1][0] <= rev:  # deleted at rev
                return None
            if g.revs[0][0] <= rev:
                return g
            cg -= 1
        return None

    def dump(self):
        return (self.key, self.modified,
                [(g.created[0], g.created[1], g.ver, list(g.revs)) for g in self.generations])


def _check_key(key) -> None:
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")


class TreeIndex:
    """etcd's treeIndex over a dict and a sorted key list (see module docstring)."""

    def __init__(self, degree: int = 0):
        # degree is the compiled B-tree's node size; accepted here for a shared signature.
        self._index: Dict[bytes, KeyIndex] = {}
        self._keys: List[bytes] = []

    def __len__(self) -> int:
        return len(self._keys)

    # -- writes ------------------------------------------------------------------
    def put(self, key: bytes, main: int, sub: int) -> None:
        _check_key(key)
        ki = self._index.get(key)
        if ki is None:
            ki = KeyIndex(key)
            ki.put(main, sub)
            self._index[key] = ki
            insort(self._keys, key)
            return
        ki.put(main, sub)

    def put_version(self, key: bytes, main: int, sub: int) -> Tuple[int, int]:
        self.put(key, main, sub)
        g = self._index[key].generations[-1]
        return g.created[0], g.ver

    def tombstone(self, key: bytes, main: int, sub: int) -> None:
        _check_key(key)
        ki = self._index.get(key)
        if ki is None:
            raise KeyError(key)
        ki.tombstone(main, sub)

    def restore(self, key: bytes, create_main: int, create_sub: int,
                mod_main: int, mod_sub: int, ver: int) -> None:
        """Rebuild a key from the backend (etcd's keyIndex.restore); key must be absent."""
        _check_key(key)
        if key in self._index:
            raise ValueError(f"restore of a key already indexed: {key!r}")
        ki = KeyIndex(key)
        ki.restore((create_main, create_sub), (mod_main, mod_sub), ver)
        self._index[key] = ki
        insort(self._keys, key)

    # -- reads -------------------------------------------------------------------
    def get(self, key: bytes, at_rev: int):
        _check_key(key)
        ki = self._index.get(key)
        if ki is None:
            return None
        return ki.get(at_rev)

    def _visit(self, key: bytes, end: bytes):
        keys = self._keys
        i = bisect_left(keys, key)
        if end == _ALL:
            stop = len(keys)
        else:
            stop = max(i, bisect_left(keys, end))
        index = self._index
        for j in range(i, stop):
            yield index[keys[j]]

    def revisions(self, key: bytes, end, at_rev: int, limit: int = 0):
        _check_key(key)
        if not end:
            r = self.get(key, at_rev)
            if r is None:
                return [], 0
            return [(key, r[0], r[1])], 1
        _check_key(end)
        out = []
        total = 0
        for ki in self._visit(key, end):
            r = ki.get(at_rev)
            if r is not None:
                if limit <= 0 or len(out) < limit:
                    out.append((ki.key, r[0], r[1]))
                total += 1
        return out, total

    def count_revisions(self, key: bytes, end, at_rev: int) -> int:
        return self.revisions(key, end, at_rev, 0)[1]

    def range_since(self, key: bytes, end, rev: int, every_sub: bool = False) -> List[Rev]:
        _check_key(key)
        if not end:
            ki = self._index.get(key)
            return [] if ki is None else ki.since(rev, every_sub)
        _check_key(end)
        out: List[Rev] = []
        for ki in self._visit(key, end):
            out.extend(ki.since(rev, every_sub))
        out.sort()
        return out

    # -- compaction --------------------------------------------------------------
    def compact(self, rev: int) -> Set[Rev]:
        available: Set[Rev] = set()
        survivors = []
        for key in self._keys:
            ki = self._index[key]
            ki.compact(rev, available)
            if ki.is_empty():
                del self._index[key]
            else:
                survivors.append(key)
        self._keys = survivors
        return available

    def keep(self, rev: int) -> Set[Rev]:
        available: Set[Rev] = set()
        for key in self._keys:
            self._index[key].keep(rev, available)
        return available

    # -- introspection (tests) ---------------------------------------------------
    def dump(self):
        """[(key, (mod_main, mod_sub), [(create_main, create_sub, ver, [revs])...])...]."""
        return [self._index[k].dump() for k in self._keys]
