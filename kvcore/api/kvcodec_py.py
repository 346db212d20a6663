"""Plain-Python twin of ext/kvcodec.pyx: mvccpb.KeyValue bytes as protobuf
serialises them (fields in number order, zeros and empty bytes left out), with the
value copied once."""
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
