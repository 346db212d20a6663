"""Compact binary encoding of the Raft types (struct framing, little endian).

Layouts (all integers unsigned, little endian):

* Entry:     term:u64 index:u64 type:u8 len:u32 data
* HardState: term:u64 vote:u64 commit:u64
* ConfState: auto_leave:u8 nv:u16 nl:u16 no:u16 nn:u16 then ids (u64 each)
* Snapshot:  index:u64 term:u64 ConfState data_len:u32 data
* ConfChange: transition:u8 n:u16 n*(type:u8 node:u64) ctx_len:u32 ctx
* Message:   type:u8 flags:u8 to:u64 from:u64 term:u64 log_term:u64 index:u64
             commit:u64 reject_hint:u64 n_entries:u32 ctx_len:u32 entries ctx [snapshot]
  flags bit0 = reject, bit1 = has snapshot.

The encodings are self-delimiting; ``decode_*`` functions take an offset and return
``(obj, new_offset)`` where that is useful for framing several objects in one buffer.
"""
from __future__ import annotations

import struct

from .types import (ConfChange, ConfChangeSingle, ConfState, Entry, HardState, Message,
                    Snapshot, SnapshotMetadata)

_ENT = struct.Struct("<QQBI")
_HS = struct.Struct("<QQQ")
_CS = struct.Struct("<BHHHH")
_SNAP = struct.Struct("<QQ")
_U32 = struct.Struct("<I")
_CC = struct.Struct("<BH")
_CCS = struct.Struct("<BQ")
_MSG = struct.Struct("<BBQQQQQQQII")

ENTRY_OVERHEAD = _ENT.size


def entry_size(e: Entry) -> int:
    """Encoded size of an entry; used for message and batch size limits."""
    return ENTRY_OVERHEAD + len(e.data)


# -- entries ---------------------------------------------------------------------------

def encode_entry(e: Entry) -> bytes:
    return _ENT.pack(e.term, e.index, e.type, len(e.data)) + e.data


def decode_entry(buf, off: int = 0) -> tuple[Entry, int]:
    term, index, typ, n = _ENT.unpack_from(buf, off)
    off += ENTRY_OVERHEAD
    return Entry(term, index, typ, bytes(buf[off:off + n])), off + n


def _encode_entries_into(parts: list, entries) -> None:
    pack = _ENT.pack
    append = parts.append
    for e in entries:
        d = e.data
        append(pack(e.term, e.index, e.type, len(d)))
        append(d)


def encode_entries(entries) -> bytes:
    parts: list = [_U32.pack(len(entries))]
    _encode_entries_into(parts, entries)
    return b"".join(parts)


def _decode_entries_from(buf, off: int, count: int) -> tuple[list, int]:
    unpack = _ENT.unpack_from
    out = []
    append = out.append
    mv = buf if isinstance(buf, bytes) else bytes(buf)
    for _ in range(count):
        term, index, typ, n = unpack(mv, off)
        off += ENTRY_OVERHEAD
        append(Entry(term, index, typ, mv[off:off + n]))
        off += n
    return out, off


def decode_entries(buf, off: int = 0) -> tuple[list, int]:
    (count,) = _U32.unpack_from(buf, off)
    return _decode_entries_from(buf, off + 4, count)


# -- hard state ------------------------------------------------------------------------

def encode_hard_state(hs: HardState) -> bytes:
    return _HS.pack(hs.term, hs.vote, hs.commit)


def decode_hard_state(buf, off: int = 0) -> tuple[HardState, int]:
    t, v, c = _HS.unpack_from(buf, off)
    return HardState(t, v, c), off + _HS.size


# -- conf state / snapshot -------------------------------------------------------------

def _encode_conf_state(cs: ConfState) -> bytes:
    ids = cs.voters + cs.learners + cs.voters_outgoing + cs.learners_next
    return _CS.pack(1 if cs.auto_leave else 0, len(cs.voters), len(cs.learners),
                    len(cs.voters_outgoing), len(cs.learners_next)) + \
        struct.pack(f"<{len(ids)}Q", *ids)


def _decode_conf_state(buf, off: int) -> tuple[ConfState, int]:
    al, nv, nl, no, nn = _CS.unpack_from(buf, off)
    off += _CS.size
    total = nv + nl + no + nn
    ids = struct.unpack_from(f"<{total}Q", buf, off)
    off += 8 * total
    cs = ConfState(ids[:nv], ids[nv:nv + nl], ids[nv + nl:nv + nl + no],
                   ids[nv + nl + no:], bool(al))
    return cs, off


def encode_conf_state(cs: ConfState) -> bytes:
    return _encode_conf_state(cs)


def decode_conf_state(buf, off: int = 0) -> tuple[ConfState, int]:
    return _decode_conf_state(buf, off)


def encode_snapshot(s: Snapshot) -> bytes:
    md = s.metadata
    return b"".join((_SNAP.pack(md.index, md.term), _encode_conf_state(md.conf_state),
                     _U32.pack(len(s.data)), s.data))


def decode_snapshot(buf, off: int = 0) -> tuple[Snapshot, int]:
    index, term = _SNAP.unpack_from(buf, off)
    cs, off = _decode_conf_state(buf, off + _SNAP.size)
    (n,) = _U32.unpack_from(buf, off)
    off += 4
    data = bytes(buf[off:off + n])
    return Snapshot(data, SnapshotMetadata(cs, index, term)), off + n


# -- conf change -----------------------------------------------------------------------

def encode_conf_change(cc: ConfChange) -> bytes:
    parts = [_CC.pack(cc.transition, len(cc.changes))]
    for c in cc.changes:
        parts.append(_CCS.pack(c.type, c.node_id))
    parts.append(_U32.pack(len(cc.context)))
    parts.append(cc.context)
    return b"".join(parts)


def decode_conf_change(buf, off: int = 0) -> ConfChange:
    """Decode a ConfChange; empty bytes decode to the empty (leave-joint) change."""
    if len(buf) - off == 0:
        return ConfChange()
    tr, n = _CC.unpack_from(buf, off)
    off += _CC.size
    changes = []
    for _ in range(n):
        t, node = _CCS.unpack_from(buf, off)
        off += _CCS.size
        changes.append(ConfChangeSingle(t, node))
    (clen,) = _U32.unpack_from(buf, off)
    off += 4
    return ConfChange(changes, tr, bytes(buf[off:off + clen]))


# -- messages --------------------------------------------------------------------------

def encode_message(m: Message) -> bytes:
    flags = (1 if m.reject else 0) | (2 if m.snapshot is not None else 0)
    ents = m.entries
    ctx = m.context
    parts = [_MSG.pack(m.type, flags, m.to, m.frm, m.term, m.log_term, m.index, m.commit,
                       m.reject_hint, len(ents), len(ctx))]
    if ents:
        _encode_entries_into(parts, ents)
    if ctx:
        parts.append(ctx)
    if m.snapshot is not None:
        parts.append(encode_snapshot(m.snapshot))
    return b"".join(parts)


def decode_message(buf, off: int = 0) -> Message:
    (typ, flags, to, frm, term, log_term, index, commit, hint, nents,
     nctx) = _MSG.unpack_from(buf, off)
    off += _MSG.size
    if nents:
        ents, off = _decode_entries_from(buf, off, nents)
    else:
        ents = []
    ctx = bytes(buf[off:off + nctx]) if nctx else b""
    off += nctx
    snap = None
    if flags & 2:
        snap, off = decode_snapshot(buf, off)
    return Message(typ, to, frm, term, log_term, index, ents, commit, snap,
                   bool(flags & 1), hint, ctx)
