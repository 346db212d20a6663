# cython: language_level=3, boundscheck=False, wraparound=False
"""mvccpb.KeyValue bytes, encoded in one buffer: the apply of a put writes one per
change (16 per 16-put txn), and the Python encoder's varint calls were ~40% of a
txn's apply.

``range_response`` frames a Range's stored KeyValues after the header in one
allocation (a 10,000-key range: one copy of each value, no 20,000 pieces to join).

``put_rows`` does the rest of a run of plain puts' per-put work in one call (index,
KeyValue, revision key, the LMDB rows and the change records).

Same bytes as protobuf's serialisation (fields in number order, zeros and empty
bytes left out, negative int64 as ten-byte two's complement). Plain-Python twin:
kvcore/api/kvcodec_py.py (tests/unit/twins pins both to protobuf's bytes).
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy


cdef inline Py_ssize_t vlen(uint64_t v) noexcept:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline char* vput(char* p, uint64_t v) noexcept:
    while v >= 0x80:
        p[0] = <char>((v & 0x7F) | 0x80)
        v >>= 7
        p += 1
    p[0] = <char>v
    return p + 1


cdef inline Py_ssize_t int_field_len(uint64_t v) noexcept:
    return 0 if v == 0 else 1 + vlen(v)


cdef inline char* int_field(char* p, unsigned char tag, uint64_t v) noexcept:
    if v == 0:
        return p
    p[0] = <char>tag
    return vput(p + 1, v)


def range_response(bytes hdr not None, list kvs not None, bint more, int64_t count):
    """RangeResponse bytes: ``hdr`` (ResponseHeader bytes) as field 1, each stored
    KeyValue of ``kvs`` as field 2, ``more`` (3) and ``count`` (4) when set."""
    cdef Py_ssize_t hl = PyBytes_GET_SIZE(hdr), n, kl
    cdef bytes kv
    n = 1 + vlen(hl) + hl + (2 if more else 0) + int_field_len(<uint64_t>count)
    for kv in kvs:
        if kv is None:
            raise TypeError("a stored KeyValue must be bytes")
        kl = PyBytes_GET_SIZE(kv)
        n += 1 + vlen(kl) + kl
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef char* p = PyBytes_AS_STRING(out)
    p[0] = 0x0a
    p = vput(p + 1, hl)
    memcpy(p, PyBytes_AS_STRING(hdr), hl)
    p += hl
    for kv in kvs:
        kl = PyBytes_GET_SIZE(kv)
        p[0] = 0x12
        p = vput(p + 1, kl)
        memcpy(p, PyBytes_AS_STRING(kv), kl)
        p += kl
    if more:
        p[0] = 0x18
        p[1] = 0x01
        p += 2
    int_field(p, 0x20, <uint64_t>count)
    return out


def key_value(bytes key not None, int64_t create_revision, int64_t mod_revision, int64_t version,
              bytes value not None, int64_t lease):
    """mvccpb.KeyValue bytes (fields key=1, create_revision=2, mod_revision=3,
    version=4, value=5, lease=6)."""
    return _key_value(key, create_revision, mod_revision, version, value, lease)


cdef bytes _key_value(bytes key, int64_t create_revision, int64_t mod_revision, int64_t version,
                      bytes value, int64_t lease):
    cdef Py_ssize_t kl = PyBytes_GET_SIZE(key), vl = PyBytes_GET_SIZE(value)
    cdef uint64_t c = <uint64_t>create_revision, m = <uint64_t>mod_revision
    cdef uint64_t ver = <uint64_t>version, ls = <uint64_t>lease
    cdef Py_ssize_t n = 0
    if kl:
        n += 1 + vlen(kl) + kl
    n += int_field_len(c) + int_field_len(m) + int_field_len(ver)
    if vl:
        n += 1 + vlen(vl) + vl
    n += int_field_len(ls)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef char* p = PyBytes_AS_STRING(out)
    if kl:
        p[0] = 0x0a
        p = vput(p + 1, kl)
        memcpy(p, PyBytes_AS_STRING(key), kl)
        p += kl
    p = int_field(p, 0x10, c)
    p = int_field(p, 0x18, m)
    p = int_field(p, 0x20, ver)
    if vl:
        p[0] = 0x2a
        p = vput(p + 1, vl)
        memcpy(p, PyBytes_AS_STRING(value), vl)
        p += vl
    int_field(p, 0x30, ls)
    return out


cdef bytes _rev_key(uint64_t main, uint64_t sub):
    """backend.rev_key: 16 bytes, big-endian (main, sub)."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 16)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef int i
    for i in range(8):
        p[7 - i] = <unsigned char>(main >> (8 * i))
        p[15 - i] = <unsigned char>(sub >> (8 * i))
    return out


def put_rows(put_version, list puts, int64_t rev, int64_t sub, change, put_kind):
    """For each (key, value, lease) of ``puts``, at revision (rev, sub), (rev, sub+1),
    ...: ``put_version(key, rev, sub)`` (the index: -> create revision, version), the
    KeyValue bytes, the revision key. -> (key-database rows [(rev key, KeyValue)],
    latest-database rows [(key, rev key)], changes [change(put_kind, key, KeyValue,
    None, lease)])."""
    cdef list rows = [], latest = [], changes = []
    cdef bytes key, value, data, rk
    cdef int64_t lease, create, version
    cdef tuple item, cv
    for item in puts:
        key = item[0]
        value = item[1]
        if key is None or value is None:
            raise TypeError("key and value must be bytes")
        lease = item[2]
        cv = put_version(key, rev, sub)
        create = cv[0]
        version = cv[1]
        data = _key_value(key, create, rev, version, value, lease)
        rk = _rev_key(<uint64_t>rev, <uint64_t>sub)
        rows.append((rk, data))
        latest.append((key, rk))
        changes.append(change(put_kind, key, data, None, lease))
        sub += 1
    return rows, latest, changes


cdef inline Py_ssize_t _varint_at(const unsigned char* p, Py_ssize_t i, Py_ssize_t end,
                                  uint64_t* out) noexcept:
    """Reads a varint at p[i]; -> the index after it, or -1 (truncated, > 10 bytes)."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while i < end and shift < 70:
        b = p[i]
        i += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return i
        shift += 7
    return -1


def txn_plain_puts(bytes data not None):
    """The puts of a TxnRequest that is nothing but plain puts: no compare, no
    failure branch, every success op a PutRequest of key, value and lease only (no
    prev_kv, ignore_value, ignore_lease, nor a field twice). -> [(key, value, lease)]
    in order, or None for any other TxnRequest (or bytes protobuf would not take
    the same way): the caller then decodes it with protobuf."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), i = 0, op_end, put_end, j
    cdef uint64_t tag, ln, lease
    cdef list out = []
    cdef bytes key, value
    cdef int seen
    while i < n:
        i = _varint_at(p, i, n, &tag)
        if i < 0 or tag != 0x12:                  # success (2), length-delimited
            return None
        i = _varint_at(p, i, n, &ln)
        if i < 0 or ln > <uint64_t>(n - i):
            return None
        op_end = i + <Py_ssize_t>ln
        # RequestOp: exactly one field, request_put (2)
        i = _varint_at(p, i, op_end, &tag)
        if i < 0 or tag != 0x12:
            return None
        i = _varint_at(p, i, op_end, &ln)
        if i < 0 or ln != <uint64_t>(op_end - i):
            return None
        put_end = op_end
        key = value = b""
        lease = 0
        seen = 0
        while i < put_end:
            i = _varint_at(p, i, put_end, &tag)
            if i < 0:
                return None
            if tag == 0x0a or tag == 0x12:        # key (1), value (2)
                if seen & (1 if tag == 0x0a else 2):
                    return None
                seen |= 1 if tag == 0x0a else 2
                i = _varint_at(p, i, put_end, &ln)
                if i < 0 or ln > <uint64_t>(put_end - i):
                    return None
                j = i + <Py_ssize_t>ln
                if tag == 0x0a:
                    key = PyBytes_FromStringAndSize(<const char*>p + i, j - i)
                else:
                    value = PyBytes_FromStringAndSize(<const char*>p + i, j - i)
                i = j
            elif tag == 0x18:                     # lease (3), int64
                if seen & 4:
                    return None
                seen |= 4
                i = _varint_at(p, i, put_end, &lease)
                if i < 0:
                    return None
            else:
                return None
        out.append((key, value, <int64_t>lease))
    return out if out else None
