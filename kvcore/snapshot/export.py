"""kvcore's backend (LMDB) -> etcd 3.5's bbolt schema, streamed bucket by bucket.

``buckets(backend, txn)`` yields (bucket name, items) in bbolt's order, items in key
order, from one LMDB read transaction (a consistent view), holding nothing but the
current item: ``write_file`` feeds it to the bbolt writer (Maintenance.Snapshot),
``backend_hash`` to a CRC (Maintenance.Hash)."""
from __future__ import annotations

import os
import struct
import tempfile
import time
from typing import Iterator

from kvcore.api import auth_pb2
from kvcore.bbolt import Writer
from kvcore.raft import codec as rcodec
from kvcore.snapshot import schema as sc
from kvcore.storage import backend as be
from kvcore.storage.codec import walcodec

_LEASE_ID = struct.Struct(">q")
_LEASE_REC = struct.Struct(">qq")       # kvcore: ttl, remaining ttl
_ALARM = struct.Struct(">QI")           # kvcore: member id, alarm type
_MEMBER_ID = struct.Struct(">Q")
_REMOVED = b"removed/"                  # kvcore/server/membership.py


def _key(b, txn) -> Iterator[tuple]:
    for k, v in txn.cursor(db=b.key):
        yield k[:8] + b"_" + k[8:], v     # 16-byte (main, sub) -> etcd's 17 bytes


def _meta(b, txn) -> Iterator[tuple]:
    get = lambda name: txn.get(name, db=b.meta)  # noqa: E731
    out = {sc.META_CONSISTENT_INDEX: get(be.META_CONSISTENT_INDEX) or sc.u64(0),
           sc.META_TERM: get(be.META_TERM) or sc.u64(0)}
    for ours, theirs in ((be.META_SCHEDULED_COMPACT, sc.META_SCHEDULED_COMPACT),
                         (be.META_FINISHED_COMPACT, sc.META_FINISHED_COMPACT)):
        v = get(ours)
        if v:
            out[theirs] = sc.rev_bytes(be.from_u64(v))
    cs = get(be.META_CONF_STATE)
    if cs:
        c = rcodec.decode_conf_state(cs)[0]
        out[sc.META_CONF_STATE] = sc.conf_state_json(c.voters, c.learners, c.voters_outgoing,
                                                      c.learners_next, c.auto_leave)
    return iter(sorted(out.items()))


def _lease(b, txn) -> Iterator[tuple]:
    for k, v in txn.cursor(db=b.lease):
        ttl, remaining = _LEASE_REC.unpack(v)
        yield k, sc.lease_value(_LEASE_ID.unpack(k)[0], ttl, remaining)


def _alarm(b, txn) -> Iterator[tuple]:
    return iter(sorted((sc.alarm_key(*_ALARM.unpack(k)), b"")
                       for k, _ in txn.cursor(db=b.alarm)))


def _auth_records(b, txn, prefix: bytes) -> Iterator[tuple]:
    """(name, record) in name order. Names too long for an LMDB key are stored under
    their hash (backend.named_key): their name comes from the record."""
    cur = txn.cursor(db=b.auth)
    out = []
    if cur.set_range(prefix):
        for k, v in cur:
            if not k.startswith(prefix):
                break
            name = k[len(prefix):]
            if name.startswith(be.HASHED):    # never UTF-8, so never a name itself
                record = auth_pb2.User if prefix == b"user/" else auth_pb2.Role
                name = record.FromString(v).name
            out.append((name, v))
    return iter(sorted(out))


def _auth(b, txn) -> Iterator[tuple]:
    out = {}
    enabled = txn.get(b"enabled", db=b.auth)
    if enabled is not None:
        out[sc.AUTH_ENABLED] = b"\x01" if enabled == b"\x01" else b"\x00"
    rev = txn.get(b"authRevision", db=b.auth)
    out[sc.AUTH_REVISION] = rev or sc.u64(1)
    return iter(sorted(out.items()))


def _members(b, txn, removed: bool) -> Iterator[tuple]:
    from kvcore.server.membership import Member
    out = []
    for k, v in txn.cursor(db=b.members):
        if k.startswith(_REMOVED):
            if removed:
                out.append((sc.member_key(_MEMBER_ID.unpack(k[len(_REMOVED):])[0]), b"removed"))
        elif not removed:
            m = Member.from_json(v)
            out.append((sc.member_key(m.id), sc.member_value(m.id, m.name, m.peer_urls,
                                                              m.client_urls, m.is_learner)))
    return iter(sorted(out))


def buckets(b: be.Backend, txn) -> Iterator[tuple]:
    """(name, items) for each of etcd's buckets, in bbolt's (byte) order."""
    makers = {
        b"alarm": lambda: _alarm(b, txn),
        b"auth": lambda: _auth(b, txn),
        b"authRoles": lambda: _auth_records(b, txn, b"role/"),
        b"authUsers": lambda: _auth_records(b, txn, b"user/"),
        b"cluster": lambda: iter([(sc.CLUSTER_VERSION, sc.ETCD_CLUSTER_VERSION)]),
        b"key": lambda: _key(b, txn),
        b"lease": lambda: _lease(b, txn),
        b"members": lambda: _members(b, txn, False),
        b"members_removed": lambda: _members(b, txn, True),
        b"meta": lambda: _meta(b, txn),
    }
    for name in sc.BUCKETS:
        yield name, makers[name]()


def write_file(b: be.Backend, directory: str) -> str:
    """The backend as an etcd 3.5 bbolt file in ``directory``; returns its path."""
    fd, path = tempfile.mkstemp(prefix=f"snapshot-{time.time_ns()}-", suffix=".db",
                                dir=directory)
    try:
        b = b.pinned()          # this file, even if a defrag swaps in another meanwhile
        with os.fdopen(fd, "wb") as f, b.begin_read() as txn:
            w = Writer(f)
            for name, items in buckets(b, txn):
                w.bucket(name, items)
            w.close()
    except BaseException:
        os.unlink(path)
        raise
    return path


def backend_hash(b: be.Backend, txn) -> int:
    """etcd's Maintenance.Hash: CRC-32C over every bucket's name, keys and values,
    leaving out meta's consistent_index and term (etcd's DefaultIgnores)."""
    crc = walcodec.crc32c
    h = 0
    for name, items in buckets(b, txn):
        h = crc(name, h)
        for k, v in items:
            if name == b"meta" and k in (sc.META_CONSISTENT_INDEX, sc.META_TERM):
                continue
            h = crc(v, crc(k, h))
    return h
