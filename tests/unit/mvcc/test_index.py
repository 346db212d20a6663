"""Table tests for the revision index, re-expressed from etcd's server/mvcc
key_index_test.go and index_test.go, run against both implementations.

The shared cases live in ``_IndexCases``; ``TestTwin`` runs them on the plain-Python
twin, ``TestCompiled`` on the Cython B-tree, and ``TestCompiledTinyNodes`` on the
B-tree with the smallest node size so that splits happen with a handful of keys.
"""
import pytest

from kvcore import _ext
from kvcore.mvcc import index_py

_compiled = _ext.compiled("revindex")   # a missing build fails here, never skips

FOO = b"foo"


def _put_test_key(ti):
    """etcd's newTestKeyIndex, on key "foo":
         {empty}
         {{14, 0}[1], {15, 1}[2], {16, 0}(t)[3]}
         {{8, 0}[1], {10, 0}[2], {12, 0}(t)[3]}
         {{2, 0}[1], {4, 0}[2], {6, 0}(t)[3]}
    """
    ti.put(FOO, 2, 0)
    ti.put(FOO, 4, 0)
    ti.tombstone(FOO, 6, 0)
    ti.put(FOO, 8, 0)
    ti.put(FOO, 10, 0)
    ti.tombstone(FOO, 12, 0)
    ti.put(FOO, 14, 0)
    ti.put(FOO, 15, 1)
    ti.tombstone(FOO, 16, 0)
    return ti


def _gens(*gens):
    """Expected generations as dump() writes them: (cmain, csub, ver, [revs])."""
    return [(c[0], c[1], ver, [tuple(r) for r in revs]) for c, ver, revs in gens]


G1 = ((2, 0), 3, [(2, 0), (4, 0), (6, 0)])
G2 = ((8, 0), 3, [(8, 0), (10, 0), (12, 0)])
G3 = ((14, 0), 3, [(14, 0), (15, 1), (16, 0)])
EMPTY = ((0, 0), 0, [])

# etcd's TestKeyIndexCompactAndKeep: (compact rev, generations after, available).
# None as generations: the key ends with only an empty generation and is removed.
COMPACT_TABLE = [
    (1, _gens(G1, G2, G3, EMPTY), set()),
    (2, _gens(G1, G2, G3, EMPTY), {(2, 0)}),
    (3, _gens(G1, G2, G3, EMPTY), {(2, 0)}),
    (4, _gens(((2, 0), 3, [(4, 0), (6, 0)]), G2, G3, EMPTY), {(4, 0)}),
    (5, _gens(((2, 0), 3, [(4, 0), (6, 0)]), G2, G3, EMPTY), {(4, 0)}),
    (6, _gens(G2, G3, EMPTY), set()),
    (7, _gens(G2, G3, EMPTY), set()),
    (8, _gens(G2, G3, EMPTY), {(8, 0)}),
    (9, _gens(G2, G3, EMPTY), {(8, 0)}),
    (10, _gens(((8, 0), 3, [(10, 0), (12, 0)]), G3, EMPTY), {(10, 0)}),
    (11, _gens(((8, 0), 3, [(10, 0), (12, 0)]), G3, EMPTY), {(10, 0)}),
    (12, _gens(G3, EMPTY), set()),
    (13, _gens(G3, EMPTY), set()),
    (14, _gens(G3, EMPTY), {(14, 0)}),
    (15, _gens(((14, 0), 3, [(15, 1), (16, 0)]), EMPTY), {(15, 1)}),
    (16, None, set()),
]


class _IndexCases:
    def make(self):
        raise NotImplementedError

    def gens_of(self, ti, key=FOO):
        for k, _mod, gens in ti.dump():
            if k == key:
                return gens
        return None

    # -- key_index_test.go ------------------------------------------------------
    def test_key_index_get(self):
        ti = _put_test_key(self.make())
        ti.compact(4)
        table = [
            (17, None), (16, None),
            (15, (15, 1, 14, 0, 2)), (14, (14, 0, 14, 0, 1)),   # generation 3
            (13, None), (12, None),
            (11, (10, 0, 8, 0, 2)), (10, (10, 0, 8, 0, 2)),     # generation 2
            (9, (8, 0, 8, 0, 1)), (8, (8, 0, 8, 0, 1)),
            (7, None), (6, None),
            (5, (4, 0, 2, 0, 2)), (4, (4, 0, 2, 0, 2)),         # generation 1
            (3, None), (2, None), (1, None), (0, None),         # compacted away
        ]
        for rev, want in table:
            assert ti.get(FOO, rev) == want, rev

    def test_key_index_since(self):
        ti = _put_test_key(self.make())
        ti.compact(4)
        all_revs = [(4, 0), (6, 0), (8, 0), (10, 0), (12, 0), (14, 0), (15, 1), (16, 0)]
        table = [(17, []), (16, all_revs[7:]), (15, all_revs[6:]), (14, all_revs[5:]),
                 (13, all_revs[5:]), (12, all_revs[4:]), (11, all_revs[4:]),
                 (10, all_revs[3:]), (9, all_revs[3:]), (8, all_revs[2:]), (7, all_revs[2:]),
                 (6, all_revs[1:]), (5, all_revs[1:]), (4, all_revs), (3, all_revs),
                 (2, all_revs), (1, all_revs), (0, all_revs)]
        for rev, want in table:
            assert ti.range_since(FOO, None, rev) == want, rev
            assert ti.range_since(FOO, b"\x00", rev) == want, rev

    def test_key_index_since_keeps_highest_sub_of_a_main(self):
        ti = self.make()
        ti.put(FOO, 3, 0)
        ti.put(FOO, 3, 2)
        ti.put(FOO, 4, 1)
        assert ti.range_since(FOO, None, 1) == [(3, 2), (4, 1)]

    def test_range_since_every_sub_for_a_watchs_history(self):
        """A key put (3, 0) and deleted (3, 1) in one txn: a watch's history has both."""
        ti = self.make()
        ti.put(FOO, 2, 0)
        ti.put(FOO, 3, 0)
        ti.tombstone(FOO, 3, 1)
        ti.put(b"fop", 3, 2)
        assert ti.range_since(FOO, None, 3) == [(3, 1)]
        assert ti.range_since(FOO, None, 3, True) == [(3, 0), (3, 1)]
        assert ti.range_since(FOO, b"\x00", 1, True) == [(2, 0), (3, 0), (3, 1), (3, 2)]

    def test_key_index_put(self):
        ti = self.make()
        ti.put(FOO, 5, 0)
        assert ti.dump() == [(FOO, (5, 0), [(5, 0, 1, [(5, 0)])])]
        ti.put(FOO, 7, 0)
        assert ti.dump() == [(FOO, (7, 0), [(5, 0, 2, [(5, 0), (7, 0)])])]

    def test_key_index_put_rejects_old_revision(self):
        ti = self.make()
        ti.put(FOO, 5, 1)
        for main, sub in [(5, 1), (5, 0), (4, 9)]:
            with pytest.raises(ValueError):
                ti.put(FOO, main, sub)
        with pytest.raises(ValueError):
            ti.tombstone(FOO, 5, 0)
        with pytest.raises(ValueError):
            ti.put(b"new", 0, 0)
        assert ti.dump() == [(FOO, (5, 1), [(5, 1, 1, [(5, 1)])])]

    def test_key_index_restore(self):
        ti = self.make()
        ti.restore(FOO, 5, 0, 7, 0, 2)
        assert ti.dump() == [(FOO, (7, 0), [(5, 0, 2, [(7, 0)])])]
        assert ti.get(FOO, 7) == (7, 0, 5, 0, 2)
        assert ti.get(FOO, 6) is None
        with pytest.raises(ValueError):
            ti.restore(FOO, 8, 0, 8, 0, 1)

    def test_key_index_tombstone(self):
        ti = self.make()
        ti.put(FOO, 5, 0)
        ti.tombstone(FOO, 7, 0)
        assert ti.dump() == [(FOO, (7, 0), [(5, 0, 2, [(5, 0), (7, 0)]), (0, 0, 0, [])])]
        ti.put(FOO, 8, 0)
        ti.put(FOO, 9, 0)
        ti.tombstone(FOO, 15, 0)
        assert ti.dump() == [(FOO, (15, 0), [(5, 0, 2, [(5, 0), (7, 0)]),
                                             (8, 0, 3, [(8, 0), (9, 0), (15, 0)]),
                                             (0, 0, 0, [])])]
        with pytest.raises(KeyError):
            ti.tombstone(FOO, 16, 0)

    def _check_compact_step(self, ti, rev, wgens, wam):
        before = ti.dump()
        assert ti.keep(rev) == wam, rev
        assert ti.dump() == before, rev       # keep never modifies
        assert ti.compact(rev) == wam, rev
        assert self.gens_of(ti) == wgens, rev
        assert len(ti) == (0 if wgens is None else 1)

    def test_key_index_compact_and_keep_continuous(self):
        ti = _put_test_key(self.make())
        for rev, wgens, wam in COMPACT_TABLE:
            self._check_compact_step(ti, rev, wgens, wam)

    def test_key_index_compact_and_keep_jump(self):
        ti = _put_test_key(self.make())
        for i, (rev, wgens, wam) in enumerate(COMPACT_TABLE):
            if (i % 2 == 0 and i < 6) or (i % 2 == 1 and i > 6):
                self._check_compact_step(ti, rev, wgens, wam)

    def test_key_index_compact_and_keep_once(self):
        for rev, wgens, wam in COMPACT_TABLE:
            self._check_compact_step(_put_test_key(self.make()), rev, wgens, wam)

    def test_key_index_compact_on_further_rev(self):
        ti = self.make()
        ti.put(FOO, 1, 0)
        ti.put(FOO, 2, 0)
        assert ti.compact(3) == {(2, 0)}
        assert ti.dump() == [(FOO, (2, 0), [(1, 0, 2, [(2, 0)])])]
        assert ti.get(FOO, 3) == (2, 0, 1, 0, 2)
        assert ti.get(FOO, 1) is None

    # -- index_test.go ----------------------------------------------------------
    def test_index_get(self):
        ti = self.make()
        ti.put(FOO, 2, 0)
        ti.put(FOO, 4, 0)
        ti.tombstone(FOO, 6, 0)
        table = [(0, None), (1, None), (2, (2, 0, 2, 0, 1)), (3, (2, 0, 2, 0, 1)),
                 (4, (4, 0, 2, 0, 2)), (5, (4, 0, 2, 0, 2)), (6, None)]
        for rev, want in table:
            assert ti.get(FOO, rev) == want, rev
        assert ti.get(b"bar", 5) is None

    def test_index_range(self):
        keys = [b"foo", b"foo1", b"foo2"]
        ti = self.make()
        for i, k in enumerate(keys):
            ti.put(k, i + 1, 0)
        entries = [(k, i + 1, 0) for i, k in enumerate(keys)]
        table = [
            (b"bar", None, []),
            (b"foo", None, entries[:1]),
            (b"foo", b"foo1", entries[:1]),
            (b"foo", b"foo2", entries[:2]),
            (b"foo", b"fop", entries),
            (b"foo1", b"fop", entries[1:]),
            (b"foo2", b"fop", entries[2:]),
            (b"foo3", b"fop", []),
            (b"foo", b"\x00", entries),
            (b"", b"\x00", entries),
            (b"foo1", b"\x00", entries[1:]),
            (b"fop", b"foo", []),                 # end before key
        ]
        for key, end, want in table:
            assert ti.revisions(key, end, 3, 0) == (want, len(want)), (key, end)
            assert ti.count_revisions(key, end, 3) == len(want), (key, end)
        assert ti.revisions(b"foo", b"", 3, 0) == (entries[:1], 1)

    def test_index_revisions_limit_and_total(self):
        ti = self.make()
        keys = [b"a", b"b", b"c", b"d", b"e"]
        for i, k in enumerate(keys):
            ti.put(k, i + 1, 0)
        ti.tombstone(b"c", 6, 0)
        alive = [(b"a", 1, 0), (b"b", 2, 0), (b"d", 4, 0), (b"e", 5, 0)]
        for limit in range(0, 7):
            want = alive if limit <= 0 or limit >= len(alive) else alive[:limit]
            assert ti.revisions(b"a", b"\x00", 6, limit) == (want, 4), limit
        assert ti.revisions(b"a", b"z", 6, -1) == (alive, 4)
        # at revision 5, c is still alive
        assert ti.revisions(b"b", b"e", 5, 2) == ([(b"b", 2, 0), (b"c", 3, 0)], 3)
        assert ti.count_revisions(b"b", b"e", 5) == 3
        assert ti.count_revisions(b"b", b"e", 6) == 2
        # single key ignores the limit, as etcd
        assert ti.revisions(b"a", None, 6, 1) == ([(b"a", 1, 0)], 1)
        assert ti.revisions(b"c", None, 6, 1) == ([], 0)

    def test_index_tombstone(self):
        ti = self.make()
        ti.put(FOO, 1, 0)
        ti.tombstone(FOO, 2, 0)
        assert ti.get(FOO, 2) is None
        with pytest.raises(KeyError):
            ti.tombstone(FOO, 3, 0)
        with pytest.raises(KeyError):
            ti.tombstone(b"missing", 3, 0)
        assert len(ti) == 1            # deleted keys stay until compaction
        ti.compact(2)
        assert len(ti) == 0

    def test_index_range_since(self):
        keys = [b"foo", b"foo1", b"foo2", b"foo2", b"foo1", b"foo"]
        ti = self.make()
        for i, k in enumerate(keys):
            ti.put(k, i + 1, 0)
        all_revs = [(i, 0) for i in range(1, 7)]
        table = [
            (b"bar", None, []),
            (b"foo", None, [(1, 0), (6, 0)]),
            (b"foo", b"foo1", [(1, 0), (6, 0)]),
            (b"foo", b"foo2", [(1, 0), (2, 0), (5, 0), (6, 0)]),
            (b"foo", b"fop", all_revs),
            (b"foo1", b"fop", [(2, 0), (3, 0), (4, 0), (5, 0)]),
            (b"foo2", b"fop", [(3, 0), (4, 0)]),
            (b"foo3", b"fop", []),
        ]
        for key, end, want in table:
            assert ti.range_since(key, end, 1) == want, (key, end)
        assert ti.range_since(b"foo", b"fop", 4) == [(4, 0), (5, 0), (6, 0)]

    _COMPACT_OPS = [
        (b"foo", False, (1, 0), (1, 0), 1),
        (b"foo1", False, (2, 0), (2, 0), 1),
        (b"foo2", False, (3, 0), (3, 0), 1),
        (b"foo2", False, (4, 0), (3, 0), 2),
        (b"foo", False, (5, 0), (1, 0), 2),
        (b"foo1", False, (6, 0), (2, 0), 2),
        (b"foo1", True, (7, 0), (0, 0), 0),
        (b"foo2", True, (8, 0), (0, 0), 0),
        (b"foo", True, (9, 0), (0, 0), 0),
        (b"foo", False, (10, 0), (10, 0), 1),
        (b"foo1", False, (10, 1), (10, 1), 1),
    ]

    def _fill(self, ti):
        for key, remove, rev, _created, _ver in self._COMPACT_OPS:
            (ti.tombstone if remove else ti.put)(key, *rev)
        return ti

    def _expected_after(self, am, rev):
        """etcd's check: rebuild from the kept revisions and everything after rev."""
        wti = index_py.TreeIndex()
        for key, remove, r, created, ver in self._COMPACT_OPS:
            if r in am or r > (rev, 0):
                if remove:
                    try:
                        wti.tombstone(key, *r)
                    except KeyError:
                        pass
                elif key not in {k for k, _, _ in wti.dump()}:
                    wti.restore(key, created[0], created[1], r[0], r[1], ver)
                else:
                    wti.put(key, *r)
        return wti.dump()

    def test_index_compact_and_keep_continuous(self):
        ti = self._fill(self.make())
        for rev in range(1, 20):
            am = ti.compact(rev)
            assert ti.keep(rev) == am, rev
            assert ti.dump() == self._expected_after(am, rev), rev

    def test_index_compact_and_keep_once(self):
        for rev in range(1, 20):
            ti = self._fill(self.make())
            am = ti.compact(rev)
            assert ti.keep(rev) == am, rev
            assert ti.dump() == self._expected_after(am, rev), rev

    # -- kvcore contract --------------------------------------------------------
    def test_keys_must_be_bytes(self):
        ti = self.make()
        with pytest.raises(TypeError):
            ti.put("foo", 1, 0)
        with pytest.raises(TypeError):
            ti.get("foo", 1)
        with pytest.raises(TypeError):
            ti.revisions(b"a", "z", 1, 0)

    def test_returned_lists_are_callers(self):
        ti = self.make()
        ti.put(b"a", 1, 0)
        ti.put(b"b", 2, 0)
        out, total = ti.revisions(b"a", b"\x00", 2, 0)
        out.clear()
        since = ti.range_since(b"a", b"\x00", 0)
        since.append((99, 0))
        am = ti.keep(2)
        am.add((99, 0))
        assert ti.revisions(b"a", b"\x00", 2, 0) == ([(b"a", 1, 0), (b"b", 2, 0)], 2)
        assert ti.range_since(b"a", b"\x00", 0) == [(1, 0), (2, 0)]
        assert ti.keep(2) == {(1, 0), (2, 0)}

    def test_many_keys_in_order(self):
        ti = self.make()
        import random
        rnd = random.Random(7)
        keys = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 6))) for _ in range(3000)]
        uniq = sorted(set(keys))
        for main, k in enumerate(keys, start=1):
            ti.put(k, main, 0)
        assert len(ti) == len(uniq)
        got, total = ti.revisions(b"", b"\x00", 1 << 40, 0)
        assert [k for k, _, _ in got] == uniq and total == len(uniq)
        lo, hi = uniq[100], uniq[900]
        got, total = ti.revisions(lo, hi, 1 << 40, 50)
        assert [k for k, _, _ in got] == uniq[100:150] and total == 800
        # delete every other key, compact, and check the survivors
        main = len(keys)
        for k in uniq[::2]:
            main += 1
            ti.tombstone(k, main, 0)
        ti.compact(main)
        assert len(ti) == len(uniq[1::2])
        got, total = ti.revisions(b"", b"\x00", main, 0)
        assert [k for k, _, _ in got] == uniq[1::2]
        for k in uniq[::2]:
            assert ti.get(k, main) is None


class TestTwin(_IndexCases):
    def make(self):
        return index_py.TreeIndex()


class TestCompiled(_IndexCases):
    def make(self):
        return _compiled.TreeIndex()


class TestCompiledTinyNodes(_IndexCases):
    def make(self):
        return _compiled.TreeIndex(degree=2)

