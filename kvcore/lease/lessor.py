"""The lessor: leases, their TTLs and the keys attached to them (etcd's lease package).

State changes (grant, revoke, checkpoint) arrive through the log and are applied in
the same LMDB transaction as everything else, so every member agrees. Only the
leader's lessor keeps time (it is "primary", as etcd's): keep-alives move an
in-memory deadline there (a follower hands them to the leader:
kvcore/server/peer_lease.py), and the leader decides expiry (``expired()``) and
proposes the revocation through the log. A follower holds every lease for ever; on
becoming leader it gives each lease its remaining TTL again plus an election timeout
(``promote``), and on losing leadership it stops keeping time (``demote``).

Checkpoints record each lease's remaining TTL through the log (on by default), so a
restart or a leader change resumes from what was left rather than granting every
lease a fresh full TTL.

With a shared clock (``clock_table``, ext/leaseclock.pyx) the leader's workers renew
leases themselves: each lease the leader keeps time for, with no checkpointed
remaining TTL and no revocation under way, has an "open" slot whose word is its
expiry, and the word is then the truth (``_sync`` reads it back). The lessor closes
a slot (takes the expiry back) whenever the core must see the next keep-alive:
on demote, a checkpoint, a revocation decision (``expired``, by compare-and-swap
against the workers' renewals), and removes it with the lease.
"""
from __future__ import annotations

import math
import struct
import time
from typing import Iterable, Optional

from kvcore.api import kv_pb2

MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL (seconds)
_REC = struct.Struct(">qq")    # ttl, remaining ttl (0 = none checkpointed)
_ID = struct.Struct(">q")


class Lease:
    __slots__ = ("id", "ttl", "remaining", "expiry", "keys", "revoking", "slot")

    def __init__(self, lease_id: int, ttl: int, remaining: int = 0):
        self.id = lease_id
        self.ttl = ttl
        self.remaining = remaining
        self.expiry = math.inf  # set when this member starts keeping time for it
        self.keys: set = set()
        self.revoking = False
        self.slot = -1          # its slot in the shared clock, if any

    def remaining_seconds(self, now: float) -> float:
        return max(0.0, self.expiry - now)


class Lessor:
    def __init__(self, backend, min_ttl: int, clock=time.monotonic, clock_table=None):
        self.b = backend
        self.min_ttl = min_ttl
        self.clock = clock
        # The shared clock's expiries are CLOCK_MONOTONIC ns: only with that clock.
        self.table = clock_table if clock is time.monotonic else None
        self.leases: dict[int, Lease] = {}
        self.key_lease: dict[bytes, int] = {}
        self.primary = False

    # ---- the shared clock (workers renew open slots) ----

    def _open(self, lease: Lease) -> None:
        """Let the workers renew ``lease`` if only a renewal's bookkeeping is due."""
        t = self.table
        if (t is None or not self.primary or lease.remaining or lease.revoking
                or lease.expiry == math.inf):
            return
        if lease.slot < 0:
            lease.slot = t.insert(lease.id, lease.ttl)
            if lease.slot < 0:
                return   # no room (or a TTL too large): the core renews it
        t.open(lease.slot, int(lease.expiry * 1e9))

    def _close(self, lease: Lease) -> None:
        """The next keep-alive of ``lease`` goes to the core; its expiry is back here."""
        if lease.slot >= 0:
            w = self.table.close(lease.slot)
            if w:
                lease.expiry = w / 1e9

    def _forget(self, lease: Lease) -> None:
        if lease.slot >= 0:
            self.table.remove(lease.slot)
            lease.slot = -1

    def _sync(self, lease: Lease) -> None:
        """lease.expiry as the workers' renewals left it (the slot stays open)."""
        if lease.slot >= 0:
            w = self.table.word(lease.slot)
            if w:
                lease.expiry = w / 1e9

    def detach(self) -> None:
        """Hand the shared clock over (this lessor is being replaced): no slot left."""
        for lease in self.leases.values():
            self._close(lease)
            self._forget(lease)

    # ---- startup ----

    def restore(self, store) -> None:
        """Load leases from LMDB and re-attach their keys from the key space."""
        now = self.clock()
        with self.b.begin_read() as txn:
            for k, v in txn.cursor(db=self.b.lease):
                lid = _ID.unpack(k)[0]
                ttl, remaining = _REC.unpack(v)
                lease = Lease(lid, ttl, remaining)
                lease.expiry = now + (remaining or ttl) if self.primary else math.inf
                self.leases[lid] = lease
            if not self.leases:
                return
            revs, _ = store.index.revisions(b"\x00", b"\x00", store.current_rev, 0)
            from kvcore.storage.backend import rev_key
            for key, main, sub in revs:
                kv = kv_pb2.KeyValue.FromString(txn.get(rev_key(main, sub), db=store.b.key))
                if kv.lease and kv.lease in self.leases:
                    self.leases[kv.lease].keys.add(key)
                    self.key_lease[key] = kv.lease

    # ---- queries ----

    def exists(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def lookup(self, lease_id: int) -> Optional[Lease]:
        return self.leases.get(lease_id)

    def effective_ttl(self, ttl: int) -> int:
        return max(ttl, self.min_ttl)

    def time_to_live(self, lease_id: int) -> Optional[tuple[int, int, list]]:
        """-> (remaining seconds, granted TTL, keys) or None if unknown."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return None
        self._sync(lease)
        if lease.expiry == math.inf:   # not keeping time (no leader to ask)
            return lease.remaining or lease.ttl, lease.ttl, sorted(lease.keys)
        return int(lease.remaining_seconds(self.clock())), lease.ttl, sorted(lease.keys)

    def expired(self) -> list[int]:
        """Leases past their expiry; an open one is closed at the same moment (the
        caller revokes them), so no worker renews it after this decision."""
        if not self.primary:
            return []
        now = self.clock()
        out = []
        t = self.table
        now_ns = int(now * 1e9)
        for l in self.leases.values():
            if l.revoking:
                continue
            if l.slot >= 0:
                w = t.expire(l.slot, now_ns)
                if w > 0:
                    continue        # open and alive
                if w < 0:
                    l.expiry = -w / 1e9
            if l.expiry <= now:
                out.append(l.id)
        return out

    # ---- leader-local ----

    def promote(self, extend: float) -> None:
        """This member became leader: every lease gets what was left of it (its last
        checkpoint, else its TTL) plus ``extend`` from now (etcd's Promote)."""
        self.primary = True
        now = self.clock()
        for lease in self.leases.values():
            lease.expiry = now + extend + (lease.remaining or lease.ttl)
            lease.revoking = False
            self._open(lease)

    def demote(self) -> None:
        """This member is no longer leader: it stops keeping time (etcd's Demote)."""
        self.primary = False
        for lease in self.leases.values():
            self._close(lease)
            self._forget(lease)
            lease.expiry = math.inf

    def renew(self, lease_id: int) -> int:
        """Keep-alive: -> the TTL, or 0 when the lease is unknown or already expired.
        Only the primary renews (the service hands a follower's to the leader)."""
        lease = self.leases.get(lease_id)
        if lease is None or lease.revoking:
            return 0
        now = self.clock()
        self._sync(lease)
        if lease.expiry <= now:
            return 0
        lease.expiry = now + lease.ttl
        if lease.slot >= 0 and self.table.word(lease.slot):
            self.table.open(lease.slot, int(lease.expiry * 1e9))
        return lease.ttl

    def clear_remaining(self, lease: Lease) -> None:
        """A renewal voided the checkpointed remaining TTL: workers may renew again."""
        lease.remaining = 0
        self._open(lease)

    def checkpoints(self) -> list[tuple[int, int]]:
        """(id, remaining TTL) of every lease whose remaining time differs from what
        was last checkpointed."""
        if not self.primary:
            return []
        now = self.clock()
        out = []
        for lease in self.leases.values():
            self._sync(lease)
            rem = max(1, math.ceil(lease.remaining_seconds(now)))
            if not lease.revoking and rem != (lease.remaining or lease.ttl):
                out.append((lease.id, rem))
        return out

    # ---- applied through the log (txn: the batch's LMDB write transaction) ----

    def grant(self, txn, lease_id: int, ttl: int) -> Lease:
        lease = Lease(lease_id, ttl)
        lease.expiry = self.clock() + ttl if self.primary else math.inf
        self.leases[lease_id] = lease
        self._open(lease)
        txn.put(_ID.pack(lease_id), _REC.pack(ttl, 0), db=self.b.lease)
        return lease

    def revoke(self, txn, lease_id: int) -> list[bytes]:
        """Forget the lease; -> its keys, which the caller deletes in the same txn."""
        lease = self.leases.pop(lease_id)
        self._forget(lease)
        txn.delete(_ID.pack(lease_id), db=self.b.lease)
        for k in lease.keys:
            self.key_lease.pop(k, None)
        return sorted(lease.keys)

    def checkpoint(self, txn, lease_id: int, remaining: int) -> None:
        lease = self.leases.get(lease_id)
        if lease is None:
            return
        lease.remaining = remaining
        if remaining:
            self._close(lease)   # its next renewal clears the checkpoint (the core's)
        else:
            self._open(lease)
        txn.put(_ID.pack(lease_id), _REC.pack(lease.ttl, remaining), db=self.b.lease)

    def on_changes(self, changes: Iterable) -> None:
        """Keep key -> lease attachment in step with applied puts and deletes."""
        for c in changes:
            old = self.key_lease.get(c.key, 0)
            new = c.lease if c.kind == kv_pb2.Event.PUT else 0
            if old == new:
                continue
            if old:
                lease = self.leases.get(old)
                if lease is not None:
                    lease.keys.discard(c.key)
                del self.key_lease[c.key]
            if new:
                lease = self.leases.get(new)
                if lease is not None:
                    lease.keys.add(c.key)
                    self.key_lease[c.key] = new
