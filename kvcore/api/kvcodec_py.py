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
