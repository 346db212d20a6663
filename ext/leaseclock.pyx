# cython: language_level=3
"""The leader's lease clock in shared memory, so that a worker answers a keep-alive
itself (kvcore/lease/clock.py says when and why; kvcore/lease/lessor.py keeps it).

One memfd mapped by the core and by each worker. A header page, then a hash table
of slots, each four int64: lease ID (0 empty, INT64_MIN removed), TTL in seconds, the
expiry "word" and padding. The word is the lease's expiry in CLOCK_MONOTONIC
nanoseconds while a worker may renew it ("open"), else 0 ("closed": the keep-alive
goes to the core). The core alone inserts, removes, opens and closes slots; a worker
only renews an open slot, by compare-and-swap of the word it read, and the core
decides expiry by compare-and-swap too, so a renewal and an expiry decision never
both win. The header carries the response header's fields under a sequence lock and
a count of the workers' renewals.

No plain-Python twin: without it (pure mode) the lessor keeps time alone and every
keep-alive goes to the core, as before.
"""
from libc.stdint cimport int64_t, uint64_t, uint8_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

import mmap
import os

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "<stdint.h>":
    const int64_t INT64_MIN

cdef extern from *:
    """
    static inline int64_t lc_load(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void lc_store(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int lc_cas(int64_t *p, int64_t expected, int64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline int64_t lc_swap(int64_t *p, int64_t v) {
        return __atomic_exchange_n(p, v, __ATOMIC_ACQ_REL);
    }
    static inline void lc_add(int64_t *p, int64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
    static inline void lc_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    """
    int64_t lc_load(int64_t* p) nogil
    void lc_store(int64_t* p, int64_t v) nogil
    int lc_cas(int64_t* p, int64_t expected, int64_t desired) nogil
    int64_t lc_swap(int64_t* p, int64_t v) nogil
    void lc_add(int64_t* p, int64_t v) nogil
    void lc_fence() nogil

DEF HEADER_BYTES = 4096
DEF MAX_PROBE = 16
# A TTL above this stays with the core (its expiry in ns must not overflow).
DEF MAX_TTL = 1000000000

# header words
DEF H_SEQ = 0
DEF H_CLUSTER = 1
DEF H_MEMBER = 2
DEF H_REV = 3
DEF H_TERM = 4
DEF H_RENEWED = 5
DEF H_SLOTS = 6
DEF H_VALID = 7      # CLOCK_MONOTONIC ns until which workers may renew (the core's hold)

SLOTS = 1 << 16   # ~2.1 MiB of slots; a lease that finds no slot stays with the core


cdef inline uint64_t _hash(uint64_t x) nogil:
    x ^= x >> 30
    x *= 0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= 0x94d049bb133111ebULL
    x ^= x >> 31
    return x


cdef inline int64_t _now() nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int _varint(uint8_t* out, uint64_t v) nogil:
    cdef int n = 0
    while v > 0x7F:
        out[n] = <uint8_t>((v & 0x7F) | 0x80)
        v >>= 7
        n += 1
    out[n] = <uint8_t>v
    return n + 1


cdef inline int _field(uint8_t* out, int tag, uint64_t v) nogil:
    """A varint field as protobuf writes it (nothing for 0)."""
    if v == 0:
        return 0
    out[0] = <uint8_t>tag
    return 1 + _varint(out + 1, v)


cdef class LeaseClock:
    cdef object _mm
    cdef object _view
    cdef int64_t* _h          # header words
    cdef int64_t* _s          # slots, 4 words each
    cdef uint64_t _mask
    cdef readonly int fd

    def __cinit__(self, int fd=-1, int slots=SLOTS):
        cdef unsigned char[::1] view
        if fd < 0:
            if slots <= 0 or slots & (slots - 1):
                raise ValueError("slots must be a power of two")
            fd = os.memfd_create("kvcore-lease-clock", os.MFD_CLOEXEC)
            os.ftruncate(fd, HEADER_BYTES + slots * 32)
        size = os.fstat(fd).st_size
        self.fd = fd
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        view = self._mm
        self._view = view
        self._h = <int64_t*>&view[0]
        self._s = <int64_t*>&view[HEADER_BYTES]
        slots = (size - HEADER_BYTES) // 32
        if self._h[H_SLOTS] == 0:
            self._h[H_SLOTS] = slots
        self._mask = <uint64_t>(slots - 1)

    @classmethod
    def attach(cls, int fd):
        """A worker's view of the core's clock (fd passed down by the core)."""
        return cls(fd)

    # ---- the core's side ----

    def publish(self, uint64_t cluster_id, uint64_t member_id, int64_t revision,
                uint64_t term):
        """The response header's fields (a sequence lock: a reader retries while odd)."""
        cdef int64_t* h = self._h
        cdef int64_t seq = h[H_SEQ]
        if (h[H_CLUSTER] == <int64_t>cluster_id and h[H_MEMBER] == <int64_t>member_id
                and h[H_REV] == revision and h[H_TERM] == <int64_t>term):
            return
        lc_store(&h[H_SEQ], seq + 1)
        lc_fence()
        lc_store(&h[H_CLUSTER], <int64_t>cluster_id)
        lc_store(&h[H_MEMBER], <int64_t>member_id)
        lc_store(&h[H_REV], revision)
        lc_store(&h[H_TERM], <int64_t>term)
        lc_store(&h[H_SEQ], seq + 2)

    def hold(self, int64_t until_ns):
        """Workers may renew until ``until_ns`` (CLOCK_MONOTONIC). The leader's core
        pushes this forward on every tick, so a core that stops ticking (stalled,
        stopped) stops its workers' renewals within the window, before the other
        members can elect a new leader; 0 stops them at once."""
        lc_store(&self._h[H_VALID], until_ns)

    def renewed(self):
        """Keep-alives the workers renewed (etcd_debugging_lease_renewed adds them)."""
        return lc_load(&self._h[H_RENEWED])

    def insert(self, int64_t lease_id, int64_t ttl):
        """A slot for a lease (closed): its index, or -1 (no room, or an ID or TTL the
        fast path does not take: the lease stays with the core)."""
        cdef uint64_t i = _hash(<uint64_t>lease_id), n
        cdef int64_t key
        cdef int64_t* s
        if lease_id <= 0 or ttl <= 0 or ttl > MAX_TTL:
            return -1
        for n in range(MAX_PROBE):
            s = self._s + ((i + n) & self._mask) * 4
            key = s[0]
            if key == 0 or key == INT64_MIN:
                lc_store(&s[2], 0)
                lc_store(&s[1], ttl)
                lc_store(&s[0], lease_id)
                return <long>((i + n) & self._mask)
        return -1

    def remove(self, long slot):
        cdef int64_t* s = self._s + slot * 4
        lc_store(&s[2], 0)
        lc_store(&s[0], INT64_MIN)

    def open(self, long slot, int64_t expiry_ns):
        """Let workers renew the lease; its expiry is now ``expiry_ns``."""
        lc_store(&self._s[slot * 4 + 2], expiry_ns if expiry_ns > 0 else 1)

    def close(self, long slot):
        """Take the lease back: -> its expiry as the workers left it (0: was closed)."""
        return lc_swap(&self._s[slot * 4 + 2], 0)

    def word(self, long slot):
        """The expiry of an open slot (ns), 0 if closed."""
        return lc_load(&self._s[slot * 4 + 2])

    def expire(self, long slot, int64_t now_ns):
        """The leader's expiry decision for an open slot, atomic with the workers'
        renewals: -> 0 if closed; the expiry (> 0) if it is alive; minus the expiry
        if it had passed, and the slot is now closed (no worker renews it again)."""
        cdef int64_t* w = &self._s[slot * 4 + 2]
        cdef int64_t v
        while True:
            v = lc_load(w)
            if v == 0 or v > now_ns:
                return v
            if lc_cas(w, v, 0):
                return -v

    # ---- a worker's side ----

    def keepalive(self, bytes request):
        """The LeaseKeepAliveResponse for ``request``, renewed here, or None when the
        core must answer it (anything but a plain positive ID; a lease not open here:
        unknown, expired, being revoked, a follower's, a pending checkpoint; a header
        being written)."""
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(request)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(request), k
        cdef uint64_t lid = 0, i
        cdef int shift = 0
        cdef int64_t* s
        cdef int64_t* h = self._h
        cdef int64_t key, ttl, w, now, seq, cid, mid, rev, term
        cdef uint8_t hdr[48]
        cdef uint8_t out[80]
        cdef int hn, on
        if n < 2 or n > 10 or p[0] != 0x08 or p[n - 1] & 0x80:
            return None
        for k in range(1, n):
            lid |= <uint64_t>(p[k] & 0x7F) << shift
            shift += 7
            if k < n - 1 and not (p[k] & 0x80):
                return None
        if lid == 0 or lid > 0x7FFFFFFFFFFFFFFF or p[n - 1] == 0:
            return None
        i = _hash(lid)
        s = NULL
        for k in range(MAX_PROBE):
            s = self._s + ((i + <uint64_t>k) & self._mask) * 4
            key = lc_load(&s[0])
            if key == <int64_t>lid:
                break
            if key == 0:
                return None
            s = NULL
        if s == NULL:
            return None
        ttl = lc_load(&s[1])
        w = lc_load(&s[2])
        if lc_load(&s[0]) != <int64_t>lid:   # the slot was reused meanwhile
            return None
        now = _now()
        if w <= now:                        # closed, or expired: the core decides
            return None
        if now >= lc_load(&h[H_VALID]):     # the core has not ticked lately
            return None
        seq = lc_load(&h[H_SEQ])
        if seq & 1:
            return None
        cid = lc_load(&h[H_CLUSTER])
        mid = lc_load(&h[H_MEMBER])
        rev = lc_load(&h[H_REV])
        term = lc_load(&h[H_TERM])
        lc_fence()
        if lc_load(&h[H_SEQ]) != seq or rev <= 0:
            return None
        if not lc_cas(&s[2], w, now + ttl * 1000000000):
            return None                     # renewed, closed or expired meanwhile
        lc_add(&h[H_RENEWED], 1)
        hn = _field(hdr, 0x08, <uint64_t>cid)
        hn += _field(hdr + hn, 0x10, <uint64_t>mid)
        hn += _field(hdr + hn, 0x18, <uint64_t>rev)
        hn += _field(hdr + hn, 0x20, <uint64_t>term)
        out[0] = 0x0a
        on = 1 + _varint(out + 1, <uint64_t>hn)
        for k in range(hn):
            out[on + k] = hdr[k]
        on += hn
        on += _field(out + on, 0x10, lid)
        on += _field(out + on, 0x18, <uint64_t>ttl)
        return PyBytes_FromStringAndSize(<char*>out, on)
