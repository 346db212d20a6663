"""Hand-assembled protobuf for the hot responses.

A RangeResponse is mostly stored ``mvccpb.KeyValue`` bytes; framing them as
field 2 by hand avoids parsing and re-serialising every value. The output is
byte-for-byte what protobuf would produce for the same message.
"""
from __future__ import annotations

from kvcore import _ext


def varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64  # int64 negatives are 10-byte two's complement
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num: int, v: int) -> bytes:
    if not v:
        return b""
    return varint(num << 3) + varint(v)


def header(cluster_id: int, member_id: int, revision: int, raft_term: int) -> bytes:
    """ResponseHeader message bytes."""
    return (field_varint(1, cluster_id) + field_varint(2, member_id) +
            field_varint(3, revision) + field_varint(4, raft_term))


class Headers:
    """ResponseHeader bytes of one member: its two IDs (ten-byte varints) encoded
    once, and the last header reused while revision and term stay the same (checked
    field by field: every response of the core asks)."""

    __slots__ = ("ids", "_ids", "_cid", "_mid", "_rev", "_term", "_last")

    def __init__(self):
        self.ids = None        # (cluster ID, member ID) the encoded fields are for
        self._ids = b""
        self._cid = self._mid = self._rev = self._term = None
        self._last = b""

    def get(self, cluster_id: int, member_id: int, revision: int, raft_term: int) -> bytes:
        if (revision == self._rev and raft_term == self._term and
                cluster_id == self._cid and member_id == self._mid):
            return self._last
        if cluster_id != self._cid or member_id != self._mid:
            self.ids = (cluster_id, member_id)
            self._ids = header(cluster_id, member_id, 0, 0)
            self._cid, self._mid = cluster_id, member_id
        self._rev, self._term = revision, raft_term
        self._last = self._ids + field_varint(3, revision) + field_varint(4, raft_term)
        return self._last


def range_response(hdr: bytes, kvs: list, more: bool, count: int) -> bytes:
    return _range_response(hdr, kvs, more, count)


def range_parts(kvs: list, more: bool, count: int) -> tuple:
    """A RangeResponse's fields after the header, kept apart until the header is
    known (the caller's read transaction gives the revision): join_with_header
    frames them in one allocation, each value copied once."""
    return kvs, more, count


def range_body(kvs: list, more: bool, count: int) -> bytes:
    """The fields after the header alone (a response the core heads later)."""
    parts = []
    append = parts.append
    for kv in kvs:
        n = len(kv)
        append(b"\x12" + varint(n) if n >= 0x80 else b"\x12" + bytes((n,)))
        append(kv)
    if more:
        append(b"\x18\x01")
    if count:
        append(b"\x20")
        append(varint(count))
    return b"".join(parts)


def join_with_header(hdr: bytes, parts: tuple) -> bytes:
    """A response from its header and range_parts' fields."""
    return _range_response(hdr, *parts)


def with_header(hdr: bytes, body: bytes) -> bytes:
    """Prefix a response body (fields 2+) with its header (field 1)."""
    return b"\x0a" + varint(len(hdr)) + hdr + body


# mvccpb.KeyValue bytes, as protobuf serialises them, with the value copied once
# (building the message and serialising it copied a large value three times):
# key_value(key, create_revision, mod_revision, version, value, lease) -> bytes.
# Compiled in ext/kvcodec.pyx (one buffer, no varint calls: it is written once per
# change), twin kvcore/api/kvcodec_py.py.
key_value = _ext.load("kvcodec").key_value
# put_rows(put_version, [(key, value, lease)], rev, sub, change, kind): a run of plain
# puts' index updates, KeyValues, revision keys, LMDB rows and change records in one
# call (WriteTxn.put_plain; same module and twin).
put_rows = _ext.load("kvcodec").put_rows
# range_response(hdr, [stored KeyValue bytes], more, count) -> RangeResponse bytes in
# one allocation (same module and twin).
_range_response = _ext.load("kvcodec").range_response
# txn_plain_puts(TxnRequest bytes) -> [(key, value, lease)] when the Txn is nothing but
# plain puts (no compare, no failure ops, no prev_kv / ignore_*), else None: the
# common write Txn read without protobuf (KVService; same module and twin).
txn_plain_puts = _ext.load("kvcodec").txn_plain_puts
