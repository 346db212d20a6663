# cython: language_level=3
"""In-memory MVCC revision index: etcd's treeIndex (server/mvcc/index.go) and keyIndex
(server/mvcc/key_index.go) as a B+tree of bytes keys with per-key generations held in
C arrays of int64.  The plain-Python twin is kvcore/mvcc/index_py.py; the two must
answer every call identically (tests/unit/mvcc/test_index_compare.py).

Contract
--------
* A revision is (main, sub): main is the store revision of a txn, sub the op's position
  inside it; revisions compare as tuples.  Methods take a revision as two ints and
  return revisions as (main, sub) tuples.  main >= 1 and sub >= 0 (ValueError).
* Keys are bytes (TypeError otherwise), ordered bytewise (memcmp, shorter first).
* end selects keys: None or b'' -> only key; b'\\x00' -> every key >= key; otherwise
  [key, end), empty when end <= key.
* put/tombstone revisions of one key must strictly increase (ValueError; etcd panics).
  A tombstone appends its revision to the current generation and opens a new empty
  one.  Tombstoning an absent key, or one whose current generation is empty, raises
  KeyError (etcd's ErrRevisionNotFound); the index is then unchanged.
* get(key, at_rev) -> (mod_main, mod_sub, create_main, create_sub, version) of the
  newest revision with main <= at_rev, or None if the key did not exist at at_rev
  (never created, deleted, or compacted away).  version counts within a generation.
* revisions(key, end, at_rev, limit) -> ([(key, mod_main, mod_sub)...], total): keys
  alive at at_rev in key order, at most limit entries when limit > 0; total counts all
  alive keys in the range without allocating per key.  A single key ignores limit.
* range_since(key, end, rev, every_sub=False) -> every revision >= (rev, 0) of the
  selected keys, sorted ascending; per key, of consecutive revisions sharing a main only
  the highest sub is returned (etcd's keyIndex.since), unless every_sub (a watch's
  history, which etcd reads from the revisions themselves: a key put and deleted in one
  txn has both events).
* compact(rev): per key, generations whose tombstone main <= rev are dropped; in the
  first remaining generation the revisions older than the newest one with main <= rev
  are dropped, and that one too when it is the generation's tombstone.  Keys left with
  only an empty generation leave the tree.  Returns 'available', the set of revisions
  <= rev that remain (the backend must keep them).  keep(rev) computes the same set
  without modifying anything (etcd's Keep, for hashKV).
* Ownership: every returned list, tuple and set is new and the caller's; the index
  keeps no reference to it.  Keys are shared (the bytes object given to the first put).
* len() counts keys in the tree; keys leave only through compact.
* Concurrency: every method runs under the GIL from start to end (no nogil section,
  no Python callbacks), so each call is atomic with respect to other Python threads;
  compact is one call over all keys.

Structure
---------
A B+tree: leaves hold sorted keys and their KeyIndex objects and are chained in key
order for range scans; an internal node holds children and separators, separator i
being the smallest key of child i + 1.  A node splits in two when it exceeds
2 * degree entries.  Keys are never deleted one by one: compact removes emptied keys
by rebuilding the tree bottom-up from the surviving leaves (O(n), and compact visits
every key anyway), packing nodes to three quarters so later inserts split late.
"""
cimport cython
from cpython.object cimport PyObject
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcmp, memcpy, memmove
from libc.stdlib cimport qsort
from libc.stdint cimport int64_t

cdef extern from "Python.h":
    PyObject* PyList_GET_ITEM(object lst, Py_ssize_t i)
    PyObject* PyDict_GetItem(object d, object k)
    Py_ssize_t PyList_GET_SIZE(object lst)
    char* PyBytes_AS_STRING(PyObject* b)
    Py_ssize_t PyBytes_GET_SIZE(PyObject* b)


DEF MAXDEPTH = 64


# --------------------------------------------------------------------------- helpers

cdef inline int keycmp(PyObject* a, const char* b, Py_ssize_t blen) noexcept:
    """Bytewise comparison of the bytes object a with b[:blen]: <0, 0 or >0."""
    cdef Py_ssize_t alen = PyBytes_GET_SIZE(a)
    cdef int r = memcmp(PyBytes_AS_STRING(a), b, alen if alen < blen else blen)
    if r != 0:
        return r
    return (alen > blen) - (alen < blen)


cdef inline Py_ssize_t bisect_left(list keys, const char* kp, Py_ssize_t kl) noexcept:
    cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if keycmp(PyList_GET_ITEM(keys, mid), kp, kl) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t bisect_right(list keys, const char* kp, Py_ssize_t kl) noexcept:
    cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(keys), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if keycmp(PyList_GET_ITEM(keys, mid), kp, kl) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t leaf_stop(list keys, bint to_end, const char* ep, Py_ssize_t el) noexcept:
    """How many of a leaf's keys are below end: one comparison when the whole leaf is."""
    cdef Py_ssize_t n = PyList_GET_SIZE(keys)
    if to_end or n == 0 or keycmp(PyList_GET_ITEM(keys, n - 1), ep, el) < 0:
        return n
    return bisect_left(keys, ep, el)


cdef inline bint rev_gt(int64_t am, int64_t asub, int64_t bm, int64_t bsub) noexcept:
    return am > bm or (am == bm and asub > bsub)


cdef int rev_cmp(const void* a, const void* b) noexcept nogil:
    cdef const rev_t* x = <const rev_t*>a
    cdef const rev_t* y = <const rev_t*>b
    if x.main != y.main:
        return -1 if x.main < y.main else 1
    if x.sub != y.sub:
        return -1 if x.sub < y.sub else 1
    return 0


cdef int revbuf_push(revbuf_t* b, int64_t main, int64_t sub) except -1:
    cdef rev_t* p
    cdef Py_ssize_t cap
    if b.n == b.cap:
        cap = b.cap * 2 if b.cap else 16
        p = <rev_t*>PyMem_Realloc(b.data, cap * sizeof(rev_t))
        if p == NULL:
            raise MemoryError()
        b.data = p
        b.cap = cap
    b.data[b.n].main = main
    b.data[b.n].sub = sub
    b.n += 1
    return 0


cdef list revbuf_to_list(revbuf_t* b, bint sort):
    cdef Py_ssize_t i
    cdef list out = []
    if sort and b.n > 1:
        qsort(b.data, b.n, sizeof(rev_t), rev_cmp)
    for i in range(b.n):
        out.append((b.data[i].main, b.data[i].sub))
    return out


cdef inline int check_rev(int64_t main, int64_t sub) except -1:
    if main < 1 or sub < 0:
        raise ValueError(f"invalid revision {(main, sub)}: main must be >= 1 and sub >= 0")
    return 0


cdef inline int check_key(object key) except -1:
    if type(key) is not bytes:
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    return 0


# --------------------------------------------------------------------------- KeyIndex

@cython.final
cdef class KeyIndex:
    """etcd's keyIndex: the generations of one key.  Created only by TreeIndex."""

    def __cinit__(self):
        self.revs = self._rbuf
        self.caprevs = 2
        self.gens = self._gbuf
        self.capgens = 2

    def __dealloc__(self):
        if self.revs != self._rbuf:
            PyMem_Free(self.revs)
        if self.gens != self._gbuf:
            PyMem_Free(self.gens)

    @staticmethod
    cdef KeyIndex new(bytes key):
        cdef KeyIndex ki = KeyIndex.__new__(KeyIndex)
        ki.key = key
        return ki

    cdef Py_ssize_t gen_end(self, Py_ssize_t g) noexcept:
        return self.gens[g + 1].start if g + 1 < self.ngens else self.nrevs

    cdef int push_gen(self, int64_t cmain, int64_t csub, int64_t ver) except -1:
        cdef gen_t* p
        cdef Py_ssize_t cap
        if self.ngens == self.capgens:
            cap = self.capgens * 2
            if self.gens == self._gbuf:
                p = <gen_t*>PyMem_Malloc(cap * sizeof(gen_t))
                if p != NULL:
                    memcpy(p, self._gbuf, self.ngens * sizeof(gen_t))
            else:
                p = <gen_t*>PyMem_Realloc(self.gens, cap * sizeof(gen_t))
            if p == NULL:
                raise MemoryError()
            self.gens = p
            self.capgens = cap
        self.gens[self.ngens].start = self.nrevs
        self.gens[self.ngens].cmain = cmain
        self.gens[self.ngens].csub = csub
        self.gens[self.ngens].ver = ver
        self.ngens += 1
        return 0

    cdef int push_rev(self, int64_t main, int64_t sub) except -1:
        cdef rev_t* p
        cdef Py_ssize_t cap
        if self.nrevs == self.caprevs:
            cap = self.caprevs * 2
            if self.revs == self._rbuf:
                p = <rev_t*>PyMem_Malloc(cap * sizeof(rev_t))
                if p != NULL:
                    memcpy(p, self._rbuf, self.nrevs * sizeof(rev_t))
            else:
                p = <rev_t*>PyMem_Realloc(self.revs, cap * sizeof(rev_t))
            if p == NULL:
                raise MemoryError()
            self.revs = p
            self.caprevs = cap
        self.revs[self.nrevs].main = main
        self.revs[self.nrevs].sub = sub
        self.nrevs += 1
        return 0

    cdef int put(self, int64_t main, int64_t sub) except -1:
        cdef gen_t* g
        check_rev(main, sub)
        if not rev_gt(main, sub, self.modified.main, self.modified.sub):
            raise ValueError(f"put with an unexpected smaller revision {(main, sub)} <= "
                             f"{(self.modified.main, self.modified.sub)} on key {self.key!r}")
        if self.ngens == 0:
            self.push_gen(0, 0, 0)
        self.push_rev(main, sub)           # before touching g: may not fail half-way
        g = &self.gens[self.ngens - 1]
        if g.start == self.nrevs - 1:      # the generation was empty: a new key
            g.cmain = main
            g.csub = sub
        g.ver += 1
        self.modified.main = main
        self.modified.sub = sub
        return 0

    cdef int restore(self, int64_t cmain, int64_t csub, int64_t mmain, int64_t msub,
                     int64_t ver) except -1:
        self.push_gen(cmain, csub, ver)
        self.push_rev(mmain, msub)
        self.modified.main = mmain
        self.modified.sub = msub
        return 0

    cdef int tombstone(self, int64_t main, int64_t sub) except -1:
        if self.is_empty():
            raise ValueError(f"tombstone on an empty keyIndex {self.key!r}")
        if self.gens[self.ngens - 1].start == self.nrevs:
            raise KeyError(self.key)
        self.put(main, sub)
        if self.ngens == self.capgens:     # make room first so push_gen cannot fail
            self.push_gen(0, 0, 0)
            self.ngens -= 1
        self.push_gen(0, 0, 0)
        return 0

    cdef bint is_empty(self):
        return self.ngens == 1 and self.nrevs == 0

    cdef Py_ssize_t find_generation(self, int64_t rev):
        """Index of the generation alive at rev, or -1 (etcd's findGeneration)."""
        cdef Py_ssize_t lastg = self.ngens - 1, cg = lastg, s, e
        while cg >= 0:
            s = self.gens[cg].start
            e = self.gen_end(cg)
            if s == e:
                cg -= 1
                continue
            if cg != lastg and self.revs[e - 1].main <= rev:
                return -1
            if self.revs[s].main <= rev:
                return cg
            cg -= 1
        return -1

    cdef Py_ssize_t find(self, int64_t at_rev, Py_ssize_t* gen_out):
        """Index in revs of the revision visible at at_rev, or -1 (etcd's get)."""
        cdef Py_ssize_t g = self.find_generation(at_rev), n, s
        if g < 0:
            return -1
        s = self.gens[g].start
        n = self.gen_end(g) - 1
        while n >= s:
            if self.revs[n].main <= at_rev:
                gen_out[0] = g
                return n
            n -= 1
        return -1

    cdef object get_tuple(self, int64_t at_rev):
        cdef Py_ssize_t g = 0
        cdef Py_ssize_t n = self.find(at_rev, &g)
        cdef gen_t* gp
        if n < 0:
            return None
        gp = &self.gens[g]
        return (self.revs[n].main, self.revs[n].sub, gp.cmain, gp.csub,
                gp.ver - (self.gen_end(g) - n - 1))

    cdef int since(self, int64_t rev, revbuf_t* out, bint every_sub=False) except -1:
        cdef Py_ssize_t gi = self.ngens - 1, i
        cdef gen_t* g
        cdef int64_t last = 0
        cdef rev_t r
        while gi > 0:
            g = &self.gens[gi]
            if g.start != self.gen_end(gi) and rev_gt(rev, 0, g.cmain, g.csub):
                break
            gi -= 1
        # the generations from gi on are contiguous in revs
        for i in range(self.gens[gi].start, self.nrevs):
            r = self.revs[i]
            if rev_gt(rev, 0, r.main, r.sub):
                continue
            if r.main == last and not every_sub:   # only the highest sub of a main is visible
                out.data[out.n - 1] = r
                continue
            revbuf_push(out, r.main, r.sub)
            last = r.main
        return 0

    cdef Py_ssize_t do_compact(self, int64_t at_rev, set available, Py_ssize_t* rev_index) except -2:
        cdef Py_ssize_t gen_idx = 0, n, s
        while gen_idx < self.ngens - 1:
            if self.revs[self.gen_end(gen_idx) - 1].main > at_rev:
                break
            gen_idx += 1
        s = self.gens[gen_idx].start
        n = self.gen_end(gen_idx) - 1
        rev_index[0] = -1
        while n >= s:
            if self.revs[n].main <= at_rev:
                available.add((self.revs[n].main, self.revs[n].sub))
                rev_index[0] = n
                break
            n -= 1
        return gen_idx

    cdef int compact(self, int64_t at_rev, set available) except -1:
        cdef Py_ssize_t rev_index = -1, gen_idx, newstart, e, i
        cdef rev_t* p
        if self.is_empty():
            raise ValueError(f"compact on an empty keyIndex {self.key!r}")
        gen_idx = self.do_compact(at_rev, available, &rev_index)
        newstart = self.gens[gen_idx].start
        e = self.gen_end(gen_idx)
        if newstart != e:
            if rev_index != -1:
                newstart = rev_index
            if e - newstart == 1 and gen_idx != self.ngens - 1:
                available.discard((self.revs[newstart].main, self.revs[newstart].sub))
                gen_idx += 1
                newstart = e
        self.gens[gen_idx].start = newstart
        if gen_idx:
            memmove(self.gens, self.gens + gen_idx, (self.ngens - gen_idx) * sizeof(gen_t))
            self.ngens -= gen_idx
        if newstart:
            memmove(self.revs, self.revs + newstart, (self.nrevs - newstart) * sizeof(rev_t))
            self.nrevs -= newstart
            for i in range(self.ngens):
                self.gens[i].start -= newstart
            if self.revs != self._rbuf and self.caprevs > 8 and self.nrevs * 4 < self.caprevs:
                p = <rev_t*>PyMem_Realloc(self.revs, (self.caprevs // 2) * sizeof(rev_t))
                if p != NULL:
                    self.revs = p
                    self.caprevs //= 2
        return 0

    cdef int keep(self, int64_t at_rev, set available) except -1:
        cdef Py_ssize_t rev_index = -1, gen_idx
        if self.is_empty():
            return 0
        gen_idx = self.do_compact(at_rev, available, &rev_index)
        if self.gens[gen_idx].start != self.gen_end(gen_idx):
            if rev_index == self.gen_end(gen_idx) - 1 and gen_idx != self.ngens - 1:
                available.discard((self.revs[rev_index].main, self.revs[rev_index].sub))
        return 0

    cdef tuple dump(self):
        cdef Py_ssize_t g, i
        cdef list gens = []
        for g in range(self.ngens):
            gens.append((self.gens[g].cmain, self.gens[g].csub, self.gens[g].ver,
                         [(self.revs[i].main, self.revs[i].sub)
                          for i in range(self.gens[g].start, self.gen_end(g))]))
        return (self.key, (self.modified.main, self.modified.sub), gens)


# --------------------------------------------------------------------------- B+tree

@cython.final
cdef class Node:
    """A B+tree node; see the module docstring.  Created only by TreeIndex."""

    @staticmethod
    cdef Node new(bint leaf, list keys, list vals):
        cdef Node n = Node.__new__(Node)
        n.leaf = leaf
        n.keys = keys
        n.vals = vals
        return n


@cython.final
cdef class TreeIndex:
    """etcd's treeIndex as a B+tree; see the module docstring for the contract."""

    def __cinit__(self, Py_ssize_t degree=32):
        if degree < 2:
            raise ValueError("degree must be >= 2")
        self.maxn = 2 * degree
        self.root = Node.new(True, [], [])
        self.count = 0
        self.height = 1
        self.keymap = {}

    def __len__(self):
        return self.count

    # -- tree primitives --------------------------------------------------------
    cdef Node seek(self, const char* kp, Py_ssize_t kl, Py_ssize_t* pos):
        """The leaf where kp would be, and in pos its bisect_left position there."""
        cdef Node node = self.root
        while not node.leaf:
            node = <Node>PyList_GET_ITEM(node.vals, bisect_right(node.keys, kp, kl))
        pos[0] = bisect_left(node.keys, kp, kl)
        return node

    cdef KeyIndex lookup(self, bytes key):
        """Point lookup through keymap: one hash probe instead of a root-to-leaf descent
        whose ~log2(n) bytes comparisons each miss the cache on a large index."""
        cdef PyObject* p = PyDict_GetItem(self.keymap, key)
        if p == NULL:
            return None
        return <KeyIndex>p

    cdef int insert(self, bytes key, KeyIndex ki) except -1:
        """Insert a key known to be absent, splitting nodes on the way back up."""
        cdef PyObject* path[MAXDEPTH]
        cdef Py_ssize_t pidx[MAXDEPTH]
        cdef Py_ssize_t depth = 0, i, mid, n
        cdef const char* kp = PyBytes_AS_STRING(<PyObject*>key)
        cdef Py_ssize_t kl = PyBytes_GET_SIZE(<PyObject*>key)
        cdef Node node = self.root, right, parent
        cdef object sep
        while not node.leaf:
            i = bisect_right(node.keys, kp, kl)
            path[depth] = <PyObject*>node
            pidx[depth] = i
            depth += 1
            node = <Node>PyList_GET_ITEM(node.vals, i)
        i = bisect_left(node.keys, kp, kl)
        node.keys.insert(i, key)
        node.vals.insert(i, ki)
        self.keymap[key] = ki
        self.count += 1
        n = PyList_GET_SIZE(node.vals)
        if n <= self.maxn:
            return 0
        # split the leaf
        mid = n >> 1
        right = Node.new(True, node.keys[mid:], node.vals[mid:])
        del node.keys[mid:]
        del node.vals[mid:]
        right.next = node.next
        node.next = right
        sep = right.keys[0]
        while True:
            if depth == 0:                 # the root split: grow a level
                self.root = Node.new(False, [sep], [node, right])
                self.height += 1
                return 0
            depth -= 1
            parent = <Node>path[depth]
            i = pidx[depth]
            parent.keys.insert(i, sep)
            parent.vals.insert(i + 1, right)
            n = PyList_GET_SIZE(parent.vals)
            if n <= self.maxn:
                return 0
            mid = n >> 1                   # split an internal node; keys[mid-1] goes up
            right = Node.new(False, parent.keys[mid:], parent.vals[mid:])
            sep = parent.keys[mid - 1]
            del parent.keys[mid - 1:]
            del parent.vals[mid:]
            node = parent

    cdef int rebuild(self, list keys, list vals) except -1:
        """Replace the tree by one bulk-loaded from sorted keys/vals."""
        cdef Py_ssize_t fill = (self.maxn * 3) // 4, n = len(keys), i, j, m
        cdef list level_nodes = [], level_mins = [], up_nodes, up_mins
        cdef Node leaf, prev = None, inner
        if fill < 2:
            fill = 2
        self.count = n
        self.height = 1
        self.keymap = dict(zip(keys, vals))
        if n == 0:
            self.root = Node.new(True, [], [])
            return 0
        for i in range(0, n, fill):
            leaf = Node.new(True, keys[i:i + fill], vals[i:i + fill])
            if prev is not None:
                prev.next = leaf
            prev = leaf
            level_nodes.append(leaf)
            level_mins.append(keys[i])
        while len(level_nodes) > 1:
            up_nodes = []
            up_mins = []
            m = len(level_nodes)
            i = 0
            while i < m:
                j = i + fill
                if m - j == 1:             # never leave a single child for the last node
                    j = m
                inner = Node.new(False, level_mins[i + 1:j], level_nodes[i:j])
                up_nodes.append(inner)
                up_mins.append(level_mins[i])
                i = j
            level_nodes = up_nodes
            level_mins = up_mins
            self.height += 1
        self.root = <Node>level_nodes[0]
        return 0

    cdef Node first_leaf(self):
        cdef Node node = self.root
        while not node.leaf:
            node = <Node>PyList_GET_ITEM(node.vals, 0)
        return node

    # -- writes -----------------------------------------------------------------
    def put(self, key, int64_t main, int64_t sub):
        check_key(key)
        cdef KeyIndex ki = self.lookup(<bytes>key)
        if ki is not None:
            ki.put(main, sub)
            return
        ki = KeyIndex.new(<bytes>key)
        ki.put(main, sub)                  # validates before the key enters the tree
        self.insert(<bytes>key, ki)

    def put_version(self, key, int64_t main, int64_t sub):
        """put, -> (create_main, version) of the key after it: the two fields a put's
        KeyValue takes from the index (one lookup where get + put took two)."""
        check_key(key)
        cdef KeyIndex ki = self.lookup(<bytes>key)
        cdef gen_t* g
        if ki is not None:
            ki.put(main, sub)
        else:
            ki = KeyIndex.new(<bytes>key)
            ki.put(main, sub)
            self.insert(<bytes>key, ki)
        g = &ki.gens[ki.ngens - 1]
        return g.cmain, g.ver

    def tombstone(self, key, int64_t main, int64_t sub):
        check_key(key)
        cdef KeyIndex ki = self.lookup(<bytes>key)
        if ki is None:
            raise KeyError(key)
        ki.tombstone(main, sub)

    def restore(self, key, int64_t create_main, int64_t create_sub,
                int64_t mod_main, int64_t mod_sub, int64_t ver):
        """Rebuild a key from the backend (etcd's keyIndex.restore); key must be absent."""
        check_key(key)
        if self.lookup(<bytes>key) is not None:
            raise ValueError(f"restore of a key already indexed: {key!r}")
        cdef KeyIndex ki = KeyIndex.new(<bytes>key)
        ki.restore(create_main, create_sub, mod_main, mod_sub, ver)
        self.insert(<bytes>key, ki)

    # -- reads ------------------------------------------------------------------
    def get(self, key, int64_t at_rev):
        check_key(key)
        cdef KeyIndex ki = self.lookup(<bytes>key)
        if ki is None:
            return None
        return ki.get_tuple(at_rev)

    def revisions(self, key, end, int64_t at_rev, Py_ssize_t limit=0):
        check_key(key)
        cdef KeyIndex ki
        cdef int64_t m
        cdef list out = []
        cdef Py_ssize_t total = 0, pos, n, g = 0, idx
        cdef Node leaf
        cdef bint to_end
        cdef const char* ep = NULL
        cdef Py_ssize_t el = 0
        if end is None or len(end) == 0:
            ki = self.lookup(<bytes>key)
            idx = -1 if ki is None else ki.find(at_rev, &g)
            if idx < 0:
                return out, 0
            out.append((key, ki.revs[idx].main, ki.revs[idx].sub))
            return out, 1
        check_key(end)
        to_end = PyBytes_GET_SIZE(<PyObject*>end) == 1 and PyBytes_AS_STRING(<PyObject*>end)[0] == 0
        ep = PyBytes_AS_STRING(<PyObject*>end)
        el = PyBytes_GET_SIZE(<PyObject*>end)
        leaf = self.seek(PyBytes_AS_STRING(<PyObject*>key), PyBytes_GET_SIZE(<PyObject*>key), &pos)
        while leaf is not None:
            n = leaf_stop(leaf.keys, to_end, ep, el)
            while pos < n:
                ki = <KeyIndex>PyList_GET_ITEM(leaf.vals, pos)
                idx = ki.find(at_rev, &g)
                if idx >= 0:
                    if limit <= 0 or PyList_GET_SIZE(out) < limit:
                        out.append((ki.key, ki.revs[idx].main, ki.revs[idx].sub))
                    total += 1
                pos += 1
            if n < PyList_GET_SIZE(leaf.keys):
                break
            leaf = leaf.next
            pos = 0
        return out, total

    def count_revisions(self, key, end, int64_t at_rev):
        check_key(key)
        cdef KeyIndex ki
        cdef Py_ssize_t total = 0, pos, n, g = 0
        cdef Node leaf
        cdef bint to_end
        cdef const char* ep
        cdef Py_ssize_t el
        if end is None or len(end) == 0:
            ki = self.lookup(<bytes>key)
            return 0 if ki is None or ki.find(at_rev, &g) < 0 else 1
        check_key(end)
        ep = PyBytes_AS_STRING(<PyObject*>end)
        el = PyBytes_GET_SIZE(<PyObject*>end)
        to_end = el == 1 and ep[0] == 0
        leaf = self.seek(PyBytes_AS_STRING(<PyObject*>key), PyBytes_GET_SIZE(<PyObject*>key), &pos)
        while leaf is not None:
            n = leaf_stop(leaf.keys, to_end, ep, el)
            while pos < n:
                if (<KeyIndex>PyList_GET_ITEM(leaf.vals, pos)).find(at_rev, &g) >= 0:
                    total += 1
                pos += 1
            if n < PyList_GET_SIZE(leaf.keys):
                break
            leaf = leaf.next
            pos = 0
        return total

    def range_since(self, key, end, int64_t rev, bint every_sub=False):
        check_key(key)
        cdef KeyIndex ki
        cdef revbuf_t buf
        cdef Py_ssize_t pos, n
        cdef Node leaf
        cdef bint to_end
        cdef const char* ep
        cdef Py_ssize_t el
        buf.data = NULL
        buf.n = 0
        buf.cap = 0
        try:
            if end is None or len(end) == 0:
                ki = self.lookup(<bytes>key)
                if ki is not None:
                    ki.since(rev, &buf, every_sub)
                return revbuf_to_list(&buf, False)
            check_key(end)
            ep = PyBytes_AS_STRING(<PyObject*>end)
            el = PyBytes_GET_SIZE(<PyObject*>end)
            to_end = el == 1 and ep[0] == 0
            leaf = self.seek(PyBytes_AS_STRING(<PyObject*>key), PyBytes_GET_SIZE(<PyObject*>key), &pos)
            while leaf is not None:
                n = leaf_stop(leaf.keys, to_end, ep, el)
                while pos < n:
                    (<KeyIndex>PyList_GET_ITEM(leaf.vals, pos)).since(rev, &buf, every_sub)
                    pos += 1
                if n < PyList_GET_SIZE(leaf.keys):
                    break
                leaf = leaf.next
                pos = 0
            return revbuf_to_list(&buf, True)
        finally:
            PyMem_Free(buf.data)

    # -- compaction -------------------------------------------------------------
    def compact(self, int64_t rev):
        cdef set available = set()
        cdef Node leaf = self.first_leaf()
        cdef KeyIndex ki
        cdef Py_ssize_t i, n, removed = 0
        cdef list keys = [], vals = []
        while leaf is not None:
            n = PyList_GET_SIZE(leaf.keys)
            for i in range(n):
                ki = <KeyIndex>PyList_GET_ITEM(leaf.vals, i)
                ki.compact(rev, available)
                if ki.is_empty():
                    removed += 1
            leaf = leaf.next
        if removed:
            leaf = self.first_leaf()
            while leaf is not None:
                n = PyList_GET_SIZE(leaf.keys)
                for i in range(n):
                    ki = <KeyIndex>PyList_GET_ITEM(leaf.vals, i)
                    if not ki.is_empty():
                        keys.append(ki.key)
                        vals.append(ki)
                leaf = leaf.next
            self.rebuild(keys, vals)
        return available

    def keep(self, int64_t rev):
        cdef set available = set()
        cdef Node leaf = self.first_leaf()
        cdef Py_ssize_t i
        while leaf is not None:
            for i in range(PyList_GET_SIZE(leaf.keys)):
                (<KeyIndex>PyList_GET_ITEM(leaf.vals, i)).keep(rev, available)
            leaf = leaf.next
        return available

    # -- introspection (tests) --------------------------------------------------
    def dump(self):
        """[(key, (mod_main, mod_sub), [(create_main, create_sub, ver, [revs])...])...]."""
        cdef list out = []
        cdef Node leaf = self.first_leaf()
        cdef Py_ssize_t i
        while leaf is not None:
            for i in range(PyList_GET_SIZE(leaf.keys)):
                out.append((<KeyIndex>PyList_GET_ITEM(leaf.vals, i)).dump())
            leaf = leaf.next
        return out

    def _check(self):
        """Assert the B+tree invariants (tests)."""
        cdef list leaves = [], chain = [], allkeys = []
        cdef Node leaf
        cdef Py_ssize_t i
        self._check_node(self.root, None, None, 1, leaves)
        leaf = self.first_leaf()
        while leaf is not None:
            chain.append(leaf)
            leaf = leaf.next
        assert [id(x) for x in chain] == [id(x) for x in leaves], "leaf chain broken"
        for leaf in leaves:
            for i in range(len(leaf.keys)):
                allkeys.append(leaf.keys[i])
                assert (<KeyIndex>leaf.vals[i]).key is leaf.keys[i], "key/KeyIndex mismatch"
                assert not (<KeyIndex>leaf.vals[i]).is_empty(), "empty KeyIndex in tree"
        assert allkeys == sorted(allkeys) and len(set(allkeys)) == len(allkeys), "order"
        assert len(allkeys) == self.count == len(self.keymap), "count"
        for leaf in leaves:
            for i in range(len(leaf.keys)):
                assert self.keymap[leaf.keys[i]] is leaf.vals[i], "keymap mismatch"

    cdef _check_node(self, Node node, object lo, object hi, Py_ssize_t depth, list leaves):
        cdef Py_ssize_t i
        assert len(node.vals) <= self.maxn, "node overflow"
        for k in node.keys:
            assert lo is None or k >= lo, "key below its subtree bound"
            assert hi is None or k < hi, "key above its subtree bound"
        if node.leaf:
            assert depth == self.height, "leaves at different depths"
            assert len(node.keys) == len(node.vals)
            assert len(node.keys) > 0 or node is self.root, "empty leaf"
            leaves.append(node)
            return
        assert len(node.vals) == len(node.keys) + 1 and len(node.vals) >= 2, "fan-out"
        bounds = [lo] + node.keys + [hi]
        for i in range(len(node.vals)):
            self._check_node(<Node>node.vals[i], bounds[i], bounds[i + 1], depth + 1, leaves)
