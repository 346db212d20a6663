# cython: language_level=3
"""The batching proposer.

Requests that change state arrive one by one; the proposer gathers every proposal
made during one event-loop turn into a batch that the core hands to Raft as a
single proposal, and that the WAL writes with a single fdatasync. When a batch is
already being persisted, new proposals simply wait for the next batch: that is
the group commit.

Each proposal's entry data is ``[u64 request id][u8 op][request bytes]``; the id
matches the applied entry back to its waiting future. Ids follow etcd's idutil
scheme: 2 bytes of member id, 5 bytes of start time in ms, then a counter, so ids
from different members or restarts do not collide.

Plain-Python twin: kvcore/server/proposer_py.py.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef class Proposer:
    cdef list _pending
    cdef dict _waiters
    cdef uint64_t _next_id
    cdef object _loop
    cdef object _on_batch
    cdef bint _scheduled

    def __init__(self, loop, uint64_t member_id, uint64_t now_ms, on_batch):
        """``on_batch()`` is called once per loop turn in which proposals arrived."""
        self._pending = []
        self._waiters = {}
        self._next_id = ((member_id & 0xFFFF) << 48) | ((now_ms & 0xFFFFFFFFFF) << 8)
        self._loop = loop
        self._on_batch = on_batch
        self._scheduled = False

    cpdef object propose(self, int op, bytes request):
        """Queue a proposal; returns a future resolved with the apply result."""
        self._next_id += 1
        cdef uint64_t rid = self._next_id
        cdef Py_ssize_t n = PyBytes_GET_SIZE(request)
        cdef bytes data = PyBytes_FromStringAndSize(NULL, 9 + n)
        cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(data)
        cdef int i
        for i in range(8):
            p[i] = (rid >> (8 * i)) & 0xFF
        p[8] = <unsigned char>op
        memcpy(p + 9, PyBytes_AS_STRING(request), n)
        fut = self._loop.create_future()
        self._waiters[rid] = fut
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._fire)
        return fut

    def _fire(self):
        self._scheduled = False
        if self._pending:
            self._on_batch()

    cpdef list take(self):
        """The proposals gathered so far, as entry data, in arrival order."""
        cdef list out = self._pending
        self._pending = []
        return out

    cpdef bint has_pending(self):
        return len(self._pending) > 0

    cpdef object waiter(self, uint64_t rid):
        """The future waiting for request ``rid`` (removed), or None when the entry
        was proposed elsewhere or its caller is gone."""
        return self._waiters.pop(rid, None)

    def fail_all(self, exc):
        """Reject every waiting proposal (leadership lost, shutdown)."""
        waiters, self._waiters = self._waiters, {}
        self._pending = []
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    def __len__(self):
        return len(self._waiters)


def decode_entry_data(bytes data):
    """-> (request id, op, request bytes)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef uint64_t rid = 0
    cdef int i
    if PyBytes_GET_SIZE(data) < 9:
        raise ValueError("short proposal")
    for i in range(8):
        rid |= (<uint64_t>p[i]) << (8 * i)
    return rid, p[8], data[9:]
