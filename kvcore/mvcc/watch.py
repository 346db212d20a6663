"""The watch hub (etcd's watchable store): watchers, synced and unsynced.

A *synced* watcher has seen every revision up to the store's; new changes are
matched against it as they are applied and sent at once. A watcher whose stream has
no room (its client reads slowly: the worker's window of undelivered messages is
full), or that starts at a past revision, is *unsynced*: it remembers only the next
revision it needs and catches up from the MVCC history when its stream has room
again. So a slow watcher costs no buffered events and never delays writes or other
watchers. If compaction overtakes an unsynced watcher, it is cancelled with
``compact_revision`` as etcd does.

A stream whose live fan-out leaves it over its window (more undelivered responses
than the worker's credit allows: a stream of many watchers on a hot key) *falls
behind* for LAG_RESYNC, as etcd's watchers that overflow their stream's channel
become victims and are resynced on a timer: the revisions of that time are not sent
one by one but caught up afterwards, each watcher's events of all of them in one
response (header revision the newest). A stream that keeps within its window gets
one response per revision, at once.

Guarantees kept: per watcher, events in revision order, no gaps, no duplicates, all
events of one revision in one response (unless the client asked for fragments).
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from kvcore.api import kv_pb2, rpc_pb2, wire
from kvcore.ipc import framing

log = logging.getLogger("kvcore.watch")

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE
GRPC_OVERHEAD_BYTES = 512 * 1024   # etcd's v3rpc grpcOverheadBytes
CATCHUP_REVS = 1000         # revisions per catch-up response (etcd's watchBatchMaxRevs)
CATCHUP_BATCH_BYTES = 1 << 20   # a stream's catch-up responses per batch, at most about
# How long a stream that overflowed its window in a fan-out waits before its watchers
# catch up (etcd: watchResyncPeriod, 100 ms). The revisions meanwhile merge.
LAG_RESYNC = 0.1
# Undelivered responses a Watch stream may have before it is behind (etcd's
# chanBufLen): a put seen by more watchers of one stream than this overflows it.
WATCH_WINDOW = 128
_now = time.monotonic   # the clock of LAG_RESYNC (a test may replace it)


class Watcher:
    __slots__ = ("stream", "id", "idf", "key", "end", "next_rev", "prev_kv", "no_put",
                 "no_delete", "progress_notify", "fragment", "synced", "sent_since_progress")

    def __init__(self, stream, wid, key, end, next_rev, prev_kv, filters, progress_notify,
                 fragment):
        self.stream = stream
        self.id = wid
        self.idf = wire.field_varint(2, wid)    # WatchResponse.watch_id, encoded once
        self.key = key
        self.end = end or None
        self.next_rev = next_rev
        self.prev_kv = prev_kv
        self.no_put = rpc_pb2.WatchCreateRequest.NOPUT in filters
        self.no_delete = rpc_pb2.WatchCreateRequest.NODELETE in filters
        self.progress_notify = progress_notify
        self.fragment = fragment
        self.synced = False
        self.sent_since_progress = False

    def matches(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.key
        if self.end == b"\x00":
            return key >= self.key
        return self.key <= key < self.end


def watch_response(hdr: bytes, wid: int, events: list = (), created=False, canceled=False,
                   compact_revision=0, cancel_reason="", fragment=False) -> bytes:
    parts = [wire.field_bytes(1, hdr), wire.field_varint(2, wid), wire.field_varint(3, created),
             wire.field_varint(4, canceled), wire.field_varint(5, compact_revision)]
    if cancel_reason:
        parts.append(wire.field_bytes(6, cancel_reason.encode()))
    if fragment:
        parts.append(b"\x38\x01")
    for ev in events:
        parts.append(wire.field_bytes(11, ev))
    return b"".join(parts)


def event_bytes(kind: int, kv: bytes, prev: Optional[bytes]) -> bytes:
    out = (b"\x08\x01" if kind == DELETE else b"") + wire.field_bytes(2, kv)
    if prev is not None:
        out += wire.field_bytes(3, prev)
    return out


class WatchHub:
    def __init__(self, store, header, max_response_bytes: int):
        """``header(rev)`` -> ResponseHeader bytes."""
        self.store = store
        self.header = header
        self.max_response_bytes = max_response_bytes
        self.by_key: dict[bytes, set] = {}
        self.ranges: set = set()
        self.unsynced: set = set()
        self.streams = 0        # open Watch streams (etcd_debugging_mvcc_watch_stream_total)
        self.events_sent = 0    # events sent to watchers (etcd_debugging_mvcc_events_total)
        # call_later(delay): catch up again after ``delay`` seconds (set by the service)
        self.wake_later = None
        self.lagging: set = set()   # streams that fell behind, until lag_left() drops them

    def _fell_behind(self, st) -> None:
        """``st`` is over its window after a fan-out: its watchers' next revisions
        wait LAG_RESYNC and then leave merged (see the module's docstring)."""
        now = _now()
        if isinstance(st, WatchStream) and st.lag_until <= now:
            st.lag_until = now + LAG_RESYNC
            self.lagging.add(st)
            if self.wake_later is not None:
                self.wake_later(LAG_RESYNC)

    def lag_left(self) -> float:
        """Seconds until the last lagging stream's lag is over (0: none is left). The
        wake-up after LAG_RESYNC comes from the loop's timer, whose clock is cached per
        loop pass: it can fire before ``_now()`` reaches a stream's ``lag_until``, and
        the catch-up it starts then sends nothing to that stream. The timer asks this
        and waits again for what is left, so a stream never stays behind for good."""
        now = _now()
        left = 0.0
        for st in list(self.lagging):
            if st.lag_until > now:
                left = max(left, st.lag_until - now)
            else:
                self.lagging.discard(st)
        return left

    # ---- membership ----

    def add(self, w: Watcher) -> None:
        if w.next_rev > self.store.current_rev:
            self._sync(w)
        else:
            self.unsynced.add(w)

    def remove(self, w: Watcher) -> None:
        if w.synced:
            self._unsync(w)
        self.unsynced.discard(w)

    def _sync(self, w: Watcher) -> None:
        w.synced = True
        if w.end is None:
            self.by_key.setdefault(w.key, set()).add(w)
        else:
            self.ranges.add(w)

    def _unsync(self, w: Watcher) -> None:
        w.synced = False
        if w.end is None:
            s = self.by_key.get(w.key)
            if s is not None:
                s.discard(w)
                if not s:
                    del self.by_key[w.key]
        else:
            self.ranges.discard(w)

    def resync_all(self) -> None:
        """After the store was replaced (snapshot install): every watcher catches up
        from the new store's history, or is cancelled if that was compacted."""
        for w in [w for ws in self.by_key.values() for w in ws] + list(self.ranges):
            self._unsync(w)
            self.unsynced.add(w)

    def count(self) -> int:
        return sum(len(s) for s in self.by_key.values()) + len(self.ranges) + len(self.unsynced)

    # ---- new revisions ----

    def notify(self, txn, rev: int, changes: list) -> None:
        """Send one revision's changes to the synced watchers they match.

        Batched for fan-out: each stream's room is checked once, a response's events
        are encoded once for all watchers that see the same ones, and each stream's
        responses leave in one batch (one IPC frame, one write to its client)."""
        by_key = self.by_key
        if not by_key and not self.ranges:
            return
        groups = []     # (watchers, their changes): a key's watchers share one list
        if by_key:
            if len(changes) == 1:
                ws = by_key.get(changes[0].key)
                if ws:
                    groups.append((ws, changes))
            else:
                per_key: dict = {}
                for c in changes:
                    if c.key in by_key:
                        per_key.setdefault(c.key, []).append(c)
                groups.extend((by_key[k], cs) for k, cs in per_key.items())
        for w in self.ranges:
            cs = [c for c in changes if w.matches(c.key)]
            if cs:
                groups.append(((w,), cs))
        if groups:
            _FanOut(self, txn, rev).run(groups)

    def _events(self, txn, w: Watcher, changes: list, rev: int) -> list:
        return [event_bytes(c.kind, c.kv, self._prev(txn, w, c.kind, c.kv, c.key, rev))
                for c in changes if not ((c.kind == PUT and w.no_put) or
                                         (c.kind == DELETE and w.no_delete))]

    def _prev(self, txn, w: Watcher, kind: int, kv: bytes, key: bytes,
              rev: int) -> Optional[bytes]:
        """The key before revision ``rev``, for a watcher that asked for prev_kv. As
        etcd's watch server: none for a create event (a put of version 1), though
        the key did exist before ``rev`` when one txn deleted and put it again."""
        if not w.prev_kv:
            return None
        prev = self.store.kv_at(txn, key, rev - 1)
        if prev is not None and kind == PUT and kv_pb2.KeyValue.FromString(kv).version == 1:
            return None
        return prev

    def _send_events(self, w: Watcher, hdr_rev: int, evs: list) -> None:
        for msg in self._responses(w, hdr_rev, evs):
            w.stream.send(msg)

    def _responses(self, w: Watcher, hdr_rev: int, evs: list) -> list:
        """One response of ``evs``, or several fragments for a watcher that asked."""
        hdr = self.header(hdr_rev)
        w.sent_since_progress = True
        self.events_sent += len(evs)
        if not w.fragment:
            return [watch_response(hdr, w.id, evs)]
        # etcd's sendFragments: whole unless it reaches the limit with two events or
        # more; else each fragment takes events while the encoded response (header,
        # id, fragment flag and all) stays below it, at least one. The limit is the
        # watch server's: --max-request-bytes + grpcOverheadBytes (512 KiB).
        limit = self.max_response_bytes + GRPC_OVERHEAD_BYTES
        whole = watch_response(hdr, w.id, evs)
        if len(whole) < limit or len(evs) < 2:
            return [whole]
        base = len(watch_response(hdr, w.id, fragment=True))
        out, chunk, size = [], [], base
        for ev in evs:
            grown = size + len(wire.field_bytes(11, ev))
            if chunk and grown >= limit:
                out.append(watch_response(hdr, w.id, chunk, fragment=True))
                chunk, grown = [], base + len(wire.field_bytes(11, ev))
            chunk.append(ev)
            size = grown
        out.append(watch_response(hdr, w.id, chunk))
        return out

    # ---- catching up ----

    def catch_up(self, txn) -> bool:
        """Serve unsynced watchers from history while their streams have room.
        Returns True if some watcher still has history to read.

        Batched like the fan-out: a stream's room is asked once per batch, its
        watchers' responses leave together (up to CATCHUP_BATCH_BYTES a batch), and
        watchers of one range at one revision read the history once."""
        store = self.store
        pending = False
        hdr_field = wire.field_bytes(1, self.header(store.current_rev))
        batches: dict = {}      # stream -> [runs as in _FanOut, whole responses, bytes]
        reads: dict = {}        # (key, end, next_rev) -> history read
        encoded: dict = {}      # (key, end, next_rev, no_put, no_delete, prev_kv) -> events
        tails: dict = {}        # the same key -> the events as WatchResponse fields
        for w in list(self.unsynced):
            st = w.stream
            batch = batches.get(st)
            if batch is None:
                if not st.can_send():
                    pending = True
                    continue
                batch = batches[st] = [{}, [], 0]
            if w.next_rev < store.compact_main_rev:
                self.unsynced.discard(w)
                # etcd's compacted response carries no revision (its header's is 0).
                batch[1].append(watch_response(self.header(0), w.id,
                                               canceled=True,
                                               compact_revision=store.compact_main_rev))
                st.watchers.pop(w.id, None)
                continue
            where = (w.key, w.end, w.next_rev)
            read = reads.get(where)
            if read is None:
                read = reads[where] = store.history(txn, w.key, w.end, w.next_rev,
                                                    CATCHUP_REVS)
            items, nxt = read
            sig = where + (w.no_put, w.no_delete, w.prev_kv)
            evs = encoded.get(sig)
            if evs is None:
                evs = encoded[sig] = [
                    event_bytes(kind, kv, self._prev(txn, w, kind, kv, _key_of(kv), main))
                    for main, kind, kv in items
                    if not ((kind == PUT and w.no_put) or (kind == DELETE and w.no_delete))]
            if evs:
                if w.fragment:
                    msgs = self._responses(w, store.current_rev, evs)
                    batch[1].extend(msgs)
                    batch[2] += sum(len(m) for m in msgs)
                else:
                    tail = tails.get(sig)
                    if tail is None:
                        tail = tails[sig] = b"".join([wire.field_bytes(11, e) for e in evs])
                    ids = batch[0].setdefault((tail, len(w.idf)), [])
                    ids.append(w.idf)
                    self.events_sent += len(evs)
                    w.sent_since_progress = True
                    batch[2] += len(tail) + len(hdr_field) + 8
                if batch[2] >= CATCHUP_BATCH_BYTES:
                    st.send_packed(_pack_runs(hdr_field, batch[0], batch[1]))
                    del batches[st]     # the next watcher of st asks for room again
            w.next_rev = nxt
            if nxt > store.current_rev:
                self.unsynced.discard(w)
                self._sync(w)
            else:
                pending = True
        for st, (runs, msgs, _) in batches.items():
            if runs or msgs:
                st.send_packed(_pack_runs(hdr_field, runs, msgs))
        return pending

    def progress(self, only_requested: bool = False) -> None:
        """Periodic progress notifications to idle synced watchers that asked."""
        hdr = self.header(self.store.current_rev)
        for group in (list(self.ranges), [w for s in self.by_key.values() for w in s]):
            for w in group:
                if w.progress_notify and not w.sent_since_progress and w.stream.can_send():
                    w.stream.send(watch_response(hdr, w.id))
                w.sent_since_progress = False


class _FanOut:
    """One revision's responses to its synced watchers, batched per stream."""

    __slots__ = ("hub", "txn", "rev", "batches", "room")

    def __init__(self, hub: WatchHub, txn, rev: int):
        self.hub = hub
        self.txn = txn
        self.rev = rev
        self.batches: dict = {}     # stream -> {(events bytes, id width): [id fields]}
        self.room: dict = {}        # stream -> whether it has room (asked once)

    def run(self, groups: list) -> None:
        hub, rev, room, batches = self.hub, self.rev, self.room, self.batches
        unsync, alone = [], []
        sent = 0
        for ws, cs in groups:
            tails: dict = {}    # (no_put, no_delete, prev_kv) -> (events bytes, count)
            for w in ws:
                if rev < w.next_rev:
                    continue    # a watcher waiting for a future start revision
                st = w.stream
                ok = room.get(st)
                if ok is None:
                    ok = room[st] = st.can_send()
                if not ok:
                    unsync.append(w)
                    continue
                w.next_rev = rev + 1
                if w.fragment:
                    alone.append((w, cs))
                    continue
                sig = (w.no_put, w.no_delete, w.prev_kv)
                tail = tails.get(sig)
                if tail is None:
                    evs = hub._events(self.txn, w, cs, rev)
                    tail = tails[sig] = (b"".join([wire.field_bytes(11, e) for e in evs]),
                                         len(evs))
                if not tail[1]:
                    continue
                # A response is header + watch_id + events: watchers of one stream that
                # share the events and the id's width differ only in the id bytes.
                runs = batches.get(st)
                if runs is None:
                    runs = batches[st] = {}
                idf = w.idf
                key = (tail[0], len(idf))
                ids = runs.get(key)
                if ids is None:
                    runs[key] = [idf]
                else:
                    ids.append(idf)
                w.sent_since_progress = True
                sent += tail[1]
        hub.events_sent += sent
        if batches:
            hdr_field = wire.field_bytes(1, hub.header(rev))
            for st, runs in batches.items():
                st.send_packed(_pack_runs(hdr_field, runs))
                if not st.can_send():
                    hub._fell_behind(st)
        for w, cs in alone:     # asked for fragments: whole responses, in order
            evs = hub._events(self.txn, w, cs, rev)
            if evs:
                hub._send_events(w, rev, evs)
        for w in unsync:
            # No room: fall back to catching up from history, from this revision.
            hub._unsync(w)
            w.next_rev = rev
            hub.unsynced.add(w)


_PREFIX = framing.GRPC_PREFIX


def _pack_runs(hdr_field: bytes, runs: dict, whole: list = ()) -> bytes:
    """An S_BATCH payload (kvcore/ipc/framing.py) of one response per watch id:
    runs maps (events bytes, id width) -> the ids' encoded fields. Each run is
    joined in one call: head + id1 + tail + head + id2 + ... + tail. ``whole``:
    responses built apart (fragments, cancellations), in their order."""
    count = len(whole)
    parts = [b""]
    append = parts.append
    for m in whole:
        append(_PREFIX.pack(0, len(m)))
        append(m)
    for (tail, width), ids in runs.items():
        head = _PREFIX.pack(0, len(hdr_field) + width + len(tail)) + hdr_field
        append(head)
        append((tail + head).join(ids))
        append(tail)
        count += len(ids)
    parts[0] = framing.pack_batch_count(count)
    return b"".join(parts)


def _key_of(kv: bytes) -> bytes:
    return kv_pb2.KeyValue.FromString(kv).key


class WatchStream:
    """The core's side of one gRPC Watch stream: its watchers and requests."""

    # As etcd: a client that half-closes its send side keeps receiving events
    # (grpcurl-style clients and the JSON gateway watch that way).
    keep_after_half_close = True

    def __init__(self, hub: WatchHub, out):
        self.hub = hub
        self.out = out          # IPC stream: send(), can_send()
        self.watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._open = True
        self.lag_until = 0.0    # fell behind in a fan-out: no room before this time
        hub.streams += 1

    def can_send(self) -> bool:
        if self.lag_until:
            if _now() < self.lag_until:
                return False
            self.lag_until = 0.0
        return self.out.can_send()

    def send(self, payload: bytes) -> None:
        self.out.send(payload)

    def send_packed(self, payload: bytes) -> None:
        """Responses already in an S_BATCH payload (one frame, one credit)."""
        packed = getattr(self.out, "send_packed", None)
        if packed is not None:
            packed(payload)
        else:
            self.send_batch(framing.split_batch(payload))

    def send_batch(self, payloads: list) -> None:
        """Several responses at once (one frame and one credit where the IPC
        stream takes batches)."""
        batch = getattr(self.out, "send_batch", None)
        if batch is not None:
            batch(payloads)
        else:
            for p in payloads:
                self.out.send(p)

    def on_message(self, payload: bytes) -> None:
        req = rpc_pb2.WatchRequest.FromString(payload)
        which = req.WhichOneof("request_union")
        store = self.hub.store
        if which == "create_request":
            self._create(req.create_request)
        elif which == "cancel_request":
            wid = req.cancel_request.watch_id
            w = self.watchers.pop(wid, None)
            if w is not None:
                self.hub.remove(w)
                self.send(watch_response(self.hub.header(store.current_rev), wid, canceled=True))
        elif which == "progress_request":
            # etcd 3.5: one response for the whole stream, only if all are synced.
            if all(w.synced for w in self.watchers.values()):
                self.send(watch_response(self.hub.header(store.current_rev), -1))

    def _create(self, c) -> None:
        store = self.hub.store
        hdr = self.hub.header(store.current_rev)
        # As etcd's v3rpc and watchStream.Watch: an empty key is "\0"; a range_end of
        # "\0" means every key from key on; any other range_end not past key is an
        # empty range, refused (watch id -1) as a duplicate id is.
        key = c.key or b"\x00"
        if c.range_end not in (b"", b"\x00") and key >= c.range_end:
            self.send(watch_response(hdr, -1, created=True, canceled=True,
                                     cancel_reason="mvcc: watcher range is empty"))
            return
        wid = c.watch_id
        if wid:
            if wid in self.watchers:
                self.send(watch_response(hdr, -1, created=True, canceled=True,
                                         cancel_reason="mvcc: duplicate watch ID provided on the "
                                                       "WatchStream"))
                return
        else:
            while self._next_id in self.watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        start = c.start_revision if c.start_revision > 0 else store.current_rev + 1
        w = Watcher(self, wid, key, c.range_end, start, c.prev_kv, list(c.filters),
                    c.progress_notify, c.fragment)
        self.watchers[wid] = w
        self.send(watch_response(hdr, wid, created=True))
        self.hub.add(w)

    def on_close(self) -> None:
        if self._open:
            self._open = False
            self.hub.streams -= 1
        for w in self.watchers.values():
            self.hub.remove(w)
        self.watchers.clear()
