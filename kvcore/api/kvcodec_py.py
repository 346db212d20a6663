"""Plain-Python twin of ext/kvcodec.pyx: mvccpb.KeyValue bytes as protobuf
serialises them (fields in number order, zeros and empty bytes left out), with the
value copied once; a RangeResponse framed around stored KeyValues."""
from __future__ import annotations


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int64 negatives are 10-byte two's complement
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _int_field(tag: bytes, v: int) -> bytes:
    return tag + _varint(v) if v else b""


def range_response(hdr: bytes, kvs: list, more: bool, count: int) -> bytes:
    if not isinstance(hdr, bytes) or not isinstance(kvs, list):
        raise TypeError("range_response takes bytes and a list of bytes")
    parts = [b"\x0a", _varint(len(hdr)), hdr]
    for kv in kvs:
        if not isinstance(kv, bytes):
            raise TypeError("a stored KeyValue must be bytes")
        parts += (b"\x12", _varint(len(kv)), kv)
    if more:
        parts.append(b"\x18\x01")
    parts.append(_int_field(b"\x20", count))
    return b"".join(parts)


def key_value(key: bytes, create_revision: int, mod_revision: int, version: int,
              value: bytes, lease: int) -> bytes:
    head = ((b"\x0a" + _varint(len(key)) + key if key else b"") +
            _int_field(b"\x10", create_revision) + _int_field(b"\x18", mod_revision) +
            _int_field(b"\x20", version))
    if not value:
        return head + _int_field(b"\x30", lease)
    return b"".join((head, b"\x2a", _varint(len(value)), value, _int_field(b"\x30", lease)))


def put_rows(put_version, puts: list, rev: int, sub: int, change, put_kind):
    """For each (key, value, lease) of ``puts``, at revision (rev, sub), (rev, sub+1),
    ...: ``put_version(key, rev, sub)`` (the index: -> create revision, version), the
    KeyValue bytes, the revision key. -> (key-database rows [(rev key, KeyValue)],
    latest-database rows [(key, rev key)], changes [change(put_kind, key, KeyValue,
    None, lease)])."""
    rows, latest, changes = [], [], []
    for key, value, lease in puts:
        if not isinstance(key, bytes) or not isinstance(value, bytes):
            raise TypeError("key and value must be bytes")
        create, version = put_version(key, rev, sub)
        data = key_value(key, create, rev, version, value, lease)
        rk = rev.to_bytes(8, "big") + sub.to_bytes(8, "big")
        rows.append((rk, data))
        latest.append((key, rk))
        changes.append(change(put_kind, key, data, None, lease))
        sub += 1
    return rows, latest, changes


def _varint_at(data: bytes, i: int, end: int):
    """-> (value, index after it), or None (truncated, more than 10 bytes)."""
    v = shift = 0
    while i < end and shift < 70:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v & 0xFFFFFFFFFFFFFFFF, i
        shift += 7
    return None


def txn_plain_puts(data: bytes):
    """The puts of a TxnRequest that is nothing but plain puts: no compare, no
    failure branch, every success op a PutRequest of key, value and lease only (no
    prev_kv, ignore_value, ignore_lease, nor a field twice). -> [(key, value, lease)]
    in order, or None for any other TxnRequest (or bytes protobuf would not take
    the same way): the caller then decodes it with protobuf."""
    if not isinstance(data, bytes):
        raise TypeError("data must be bytes")
    out = []
    i, n = 0, len(data)
    while i < n:
        r = _varint_at(data, i, n)
        if r is None or r[0] != 0x12:
            return None
        r = _varint_at(data, r[1], n)
        if r is None or r[0] > n - r[1]:
            return None
        op_end = r[1] + r[0]
        r = _varint_at(data, r[1], op_end)
        if r is None or r[0] != 0x12:
            return None
        r = _varint_at(data, r[1], op_end)
        if r is None or r[0] != op_end - r[1]:
            return None
        i = r[1]
        fields = {}
        while i < op_end:
            r = _varint_at(data, i, op_end)
            if r is None:
                return None
            tag, i = r
            if tag in fields:
                return None
            if tag in (0x0A, 0x12):
                r = _varint_at(data, i, op_end)
                if r is None or r[0] > op_end - r[1]:
                    return None
                fields[tag] = data[r[1]:r[1] + r[0]]
                i = r[1] + r[0]
            elif tag == 0x18:
                r = _varint_at(data, i, op_end)
                if r is None:
                    return None
                v, i = r
                fields[tag] = v - (1 << 64) if v >= 1 << 63 else v
            else:
                return None
        out.append((fields.get(0x0A, b""), fields.get(0x12, b""), fields.get(0x18, 0)))
    return out or None
