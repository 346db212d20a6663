# cython: language_level=3
"""WAL record framing: [u32 length][u8 type][u32 crc][payload], little-endian.

Each record's CRC-32C covers its type byte and payload and is chained from the
previous record's CRC, so a record cannot be dropped, reordered or spliced in
from another log without detection. A record of length 0 marks the end of the
written part of a preallocated (zero-filled) segment.

The raft-entry payload is [u64 index][u64 term][u8 entry type][data].

Plain-Python twin: kvcore/storage/walcodec_py.py (tests pin both to the same bytes).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

DEF HEADER = 9        # u32 length + u8 type + u32 crc
DEF ENTRY_HEADER = 17  # u64 index + u64 term + u8 type

REC_ENTRY = 1

cdef uint32_t CRC_TABLE[8][256]

cdef extern from "crc32c_hw.h":
    uint32_t kv_crc32c_hw(uint32_t crc, const unsigned char* p, size_t n) nogil
    int kv_crc32c_hw_available()

# The CPU's crc32 instruction when it has one (x86-64 with SSE4.2), else the table.
cdef bint HW_CRC = kv_crc32c_hw_available()
HARDWARE_CRC = bool(HW_CRC)


cdef void _init_table():
    cdef uint32_t crc, i, j, k
    for i in range(256):
        crc = i
        for j in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x82F63B78  # Castagnoli, reflected
            else:
                crc >>= 1
        CRC_TABLE[0][i] = crc
    for i in range(256):
        crc = CRC_TABLE[0][i]
        for k in range(1, 8):
            crc = CRC_TABLE[0][crc & 0xFF] ^ (crc >> 8)
            CRC_TABLE[k][i] = crc


_init_table()


cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* buf, size_t n) noexcept nogil:
    """CRC-32C. ``crc`` is the running value (0 to start)."""
    if HW_CRC:
        return ~kv_crc32c_hw(~crc, buf, n)
    return crc32c_table(crc, buf, n)


cdef uint32_t crc32c_table(uint32_t crc, const unsigned char* buf, size_t n) noexcept nogil:
    """Slice-by-8 CRC-32C, for CPUs without the instruction (and to check it)."""
    cdef uint64_t word
    crc = ~crc
    while n >= 8:
        word = (<uint64_t>buf[0] | (<uint64_t>buf[1] << 8) | (<uint64_t>buf[2] << 16) |
                (<uint64_t>buf[3] << 24) | (<uint64_t>buf[4] << 32) | (<uint64_t>buf[5] << 40) |
                (<uint64_t>buf[6] << 48) | (<uint64_t>buf[7] << 56))
        word ^= crc
        crc = (CRC_TABLE[7][word & 0xFF] ^ CRC_TABLE[6][(word >> 8) & 0xFF] ^
               CRC_TABLE[5][(word >> 16) & 0xFF] ^ CRC_TABLE[4][(word >> 24) & 0xFF] ^
               CRC_TABLE[3][(word >> 32) & 0xFF] ^ CRC_TABLE[2][(word >> 40) & 0xFF] ^
               CRC_TABLE[1][(word >> 48) & 0xFF] ^ CRC_TABLE[0][(word >> 56) & 0xFF])
        buf += 8
        n -= 8
    while n > 0:
        crc = CRC_TABLE[0][(crc ^ buf[0]) & 0xFF] ^ (crc >> 8)
        buf += 1
        n -= 1
    return ~crc


def crc32c(data, uint32_t crc=0):
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return crc
    return crc32c_update(crc, &view[0], view.shape[0])


def crc32c_by_table(data, uint32_t crc=0):
    """crc32c without the CPU instruction (tests compare the two)."""
    cdef const unsigned char[:] view = data
    if view.shape[0] == 0:
        return crc
    return crc32c_table(crc, &view[0], view.shape[0])


cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = (v >> 24) & 0xFF


cdef inline void _put_u64(unsigned char* p, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        p[i] = (v >> (8 * i)) & 0xFF


cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _get_u64(const unsigned char* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>p[i]) << (8 * i)
    return v


def encode_record(int rtype, bytes payload, uint32_t prev_crc):
    """-> (record bytes, crc) for one record chained after ``prev_crc``."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HEADER + n)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef unsigned char t = rtype
    cdef uint32_t crc = crc32c_update(prev_crc, &t, 1)
    crc = crc32c_update(crc, <const unsigned char*>PyBytes_AS_STRING(payload), n)
    _put_u32(p, <uint32_t>n)
    p[4] = t
    _put_u32(p + 5, crc)
    memcpy(p + HEADER, PyBytes_AS_STRING(payload), n)
    return out, crc


def encode_entries(list entries, uint32_t prev_crc, tail=None):
    """Frame raft entries [(index, term, etype, data), ...] as REC_ENTRY records in
    one buffer (one write, one fdatasync for the whole batch) -> (bytes, crc).
    ``tail``: (rtype, payload bytes) of one more record framed after them (the hard
    state), so a large batch is not copied again to append it."""
    cdef Py_ssize_t total = 0, n
    cdef object e
    cdef bytes tail_payload = None
    cdef unsigned char tail_type = 0
    for e in entries:
        total += HEADER + ENTRY_HEADER + PyBytes_GET_SIZE(<bytes>e[3])
    if tail is not None:
        tail_type = <unsigned char>(<int>tail[0])
        tail_payload = <bytes>tail[1]
        total += HEADER + PyBytes_GET_SIZE(tail_payload)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef unsigned char* body
    cdef bytes data
    cdef uint32_t crc = prev_crc
    cdef unsigned char t = REC_ENTRY
    for e in entries:
        data = <bytes>e[3]
        n = ENTRY_HEADER + PyBytes_GET_SIZE(data)
        body = p + HEADER
        _put_u64(body, <uint64_t>e[0])
        _put_u64(body + 8, <uint64_t>e[1])
        body[16] = <unsigned char>(<int>e[2])
        memcpy(body + ENTRY_HEADER, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        crc = crc32c_update(crc, &t, 1)
        crc = crc32c_update(crc, body, n)
        _put_u32(p, <uint32_t>n)
        p[4] = t
        _put_u32(p + 5, crc)
        p += HEADER + n
    if tail_payload is not None:
        n = PyBytes_GET_SIZE(tail_payload)
        memcpy(p + HEADER, PyBytes_AS_STRING(tail_payload), n)
        crc = crc32c_update(crc, &tail_type, 1)
        crc = crc32c_update(crc, p + HEADER, n)
        _put_u32(p, <uint32_t>n)
        p[4] = tail_type
        _put_u32(p + 5, crc)
    return out, crc


def decode_entry(bytes payload):
    """REC_ENTRY payload -> (index, term, etype, data)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    if PyBytes_GET_SIZE(payload) < ENTRY_HEADER:
        raise ValueError("short entry record")
    return (_get_u64(p), _get_u64(p + 8), p[16], payload[ENTRY_HEADER:])


def decode_records(const unsigned char[:] buf, Py_ssize_t offset, uint32_t crc):
    """Read records from ``buf[offset:]`` chained after ``crc``.

    -> (records [(type, payload)], end offset, crc after the last good record, stop)
    where stop says why reading ended: "eof" (exactly at the end), "zero" (a zero
    length: the unwritten tail of a preallocated segment), "short" (a record runs
    past the end) or "crc" (a checksum mismatch at ``end``). The caller decides
    whether a "short"/"crc" stop is a torn tail (only zeros follow) or corruption.
    """
    cdef Py_ssize_t size = buf.shape[0]
    cdef uint32_t n, want, got
    cdef unsigned char t
    cdef list records = []
    while True:
        if offset == size:
            return records, offset, crc, "eof"
        if offset + HEADER > size:
            return records, offset, crc, "short"
        n = _get_u32(&buf[offset])
        if n == 0:
            return records, offset, crc, "zero"
        if offset + HEADER + n > size:
            return records, offset, crc, "short"
        t = buf[offset + 4]
        want = _get_u32(&buf[offset + 5])
        got = crc32c_update(crc, &t, 1)
        got = crc32c_update(got, &buf[offset + HEADER], n)
        if got != want:
            return records, offset, crc, "crc"
        records.append((t, bytes(buf[offset + HEADER:offset + HEADER + n])))
        crc = got
        offset += HEADER + n
