# Revision index: per-key generations (KeyIndex) in a B+tree keyed by bytes (TreeIndex).
# The contract is written at the top of revindex.pyx.
#
# NOTE: not yet paired with revindex.pyx by the build.  setup.py compiles ext/<name>.pyx
# as kvcore._ext.<name>, and Cython looks for that module's .pxd as
# kvcore._ext.<name>.pxd or kvcore/_ext/<name>.pxd, never ext/<name>.pxd; so
# revindex.pyx repeats the struct and attribute declarations between "# [pxd]" markers.
# When the build pairs the files, drop those blocks from the .pyx (checked to compile
# that way: a copy of the .pyx without them, beside this file, builds as "revindex").
cimport cython
from libc.stdint cimport int64_t


cdef struct rev_t:
    int64_t main
    int64_t sub


cdef struct gen_t:
    Py_ssize_t start        # index in KeyIndex.revs of the generation's first revision
    int64_t cmain           # created revision
    int64_t csub
    int64_t ver             # version count of the generation


cdef struct revbuf_t:       # growable array of revisions (range_since)
    rev_t* data
    Py_ssize_t n
    Py_ssize_t cap


@cython.final
cdef class KeyIndex:
    # All generations' revisions live in one ascending array; generation i covers
    # revs[gens[i].start : gens[i+1].start] (the last one up to nrevs).
    cdef bytes key
    cdef rev_t modified
    cdef rev_t* revs
    cdef Py_ssize_t nrevs
    cdef Py_ssize_t caprevs
    cdef gen_t* gens
    cdef Py_ssize_t ngens
    cdef Py_ssize_t capgens
    cdef rev_t _rbuf[2]     # inline storage: most keys never allocate
    cdef gen_t _gbuf[2]

    @staticmethod
    cdef KeyIndex new(bytes key)
    cdef Py_ssize_t gen_end(self, Py_ssize_t g) noexcept
    cdef int push_gen(self, int64_t cmain, int64_t csub, int64_t ver) except -1
    cdef int push_rev(self, int64_t main, int64_t sub) except -1
    cdef int put(self, int64_t main, int64_t sub) except -1
    cdef int restore(self, int64_t cmain, int64_t csub, int64_t mmain, int64_t msub,
                     int64_t ver) except -1
    cdef int tombstone(self, int64_t main, int64_t sub) except -1
    cdef bint is_empty(self)
    cdef Py_ssize_t find_generation(self, int64_t rev)
    cdef Py_ssize_t find(self, int64_t at_rev, Py_ssize_t* gen_out)
    cdef object get_tuple(self, int64_t at_rev)
    cdef int since(self, int64_t rev, revbuf_t* out, bint every_sub=*) except -1
    cdef Py_ssize_t do_compact(self, int64_t at_rev, set available, Py_ssize_t* rev_index) except -2
    cdef int compact(self, int64_t at_rev, set available) except -1
    cdef int keep(self, int64_t at_rev, set available) except -1
    cdef tuple dump(self)


@cython.final
cdef class Node:
    cdef bint leaf
    cdef list keys          # leaf: keys; internal: separators, len(vals) - 1 of them
    cdef list vals          # leaf: KeyIndex per key; internal: child Nodes
    cdef Node next          # leaf chain, in key order

    @staticmethod
    cdef Node new(bint leaf, list keys, list vals)


@cython.final
cdef class TreeIndex:
    cdef Node root
    cdef Py_ssize_t count
    cdef Py_ssize_t maxn    # most entries in a node before it splits (2 * degree)
    cdef Py_ssize_t height
    cdef dict keymap        # key -> KeyIndex, the same objects as the leaves hold

    cdef Node seek(self, const char* kp, Py_ssize_t kl, Py_ssize_t* pos)
    cdef KeyIndex lookup(self, bytes key)
    cdef int insert(self, bytes key, KeyIndex ki) except -1
    cdef int rebuild(self, list keys, list vals) except -1
    cdef Node first_leaf(self)
    cdef _check_node(self, Node node, object lo, object hi, Py_ssize_t depth, list leaves)
