"""The write-ahead log: segmented, preallocated files of CRC-chained records.

Layout (like etcd's): ``<data-dir>/member/wal/<seq:016x>-<first index:016x>.wal``.
Every segment starts with a CRC record whose payload seeds the checksum chain with
the previous segment's last CRC, so segments verify on their own and in order.

Contract:
* ``save(state, entries)`` appends and makes them durable with ONE fdatasync; it
  returns only once they would survive a crash. Entries may rewrite a suffix of the
  log (raft conflict resolution): on replay a later entry at index i drops every
  earlier-written entry >= i.
* ``open`` repairs a torn tail: a record cut short, or failing its CRC with a
  sector of it never written (still zeros), at the end of the LAST segment and
  followed only by zeros, is truncated away (the write never completed, so it was
  never acknowledged). A last record written in full that fails its CRC is damage.
  A bad record with data after it, or
  anywhere in an earlier segment, is corruption: WalCorruptError, never skipped.
* ``release_before(index)`` deletes whole segments whose entries all precede
  ``index`` (after a snapshot made them unnecessary).
* With ``fill_ahead`` (bytes) a background ZeroFiller (walfill.py) writes and syncs
  zeros ahead of the write offset, so an append's fdatasync need not also commit the
  conversion of preallocated extents; a new segment gets its first ``FIRST_FILL``
  bytes of zeros with its header (the same fsync).
"""
from __future__ import annotations

import logging
import os
import struct
import time

from kvcore import failpoints, logs

log = logging.getLogger("kvcore.wal")
WARN_SYNC_SECONDS = 1.0   # etcd's warnSyncDuration
from dataclasses import dataclass, field
from typing import Optional

from kvcore.storage import private_dirs
from kvcore.storage.codec import walcodec
from kvcore.storage.walfill import ZeroFiller

REC_ENTRY = 1
REC_STATE = 2     # raft hard state: term, vote, commit
REC_CRC = 3       # segment start: the previous segment's last crc
REC_META = 4      # member id, cluster id (written once, first segment)
REC_SNAPSHOT = 5  # a snapshot was taken at (index, term)

SEGMENT_BYTES = 64 * 1024 * 1024
SECTOR = 512       # the unit a disk writes whole (torn-write detection)
FIRST_FILL = 64 * 1024   # zeros written with a new segment's header when filling ahead
_STATE = struct.Struct("<QQQ")
_META = struct.Struct("<QQ")
_SNAP = struct.Struct("<QQ")
_CRC = struct.Struct("<I")


class WalCorruptError(Exception):
    pass


@dataclass
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0


@dataclass
class WalContents:
    member_id: int = 0
    cluster_id: int = 0
    state: HardState = field(default_factory=HardState)
    snapshot_index: int = 0
    snapshot_term: int = 0
    entries: list = field(default_factory=list)  # [(index, term, etype, data)] in order
    repaired_bytes: int = 0  # how much torn tail was cut away


def _segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def _parse_name(name: str) -> Optional[tuple[int, int]]:
    if not name.endswith(".wal"):
        return None
    try:
        seq, index = name[:-4].split("-")
        return int(seq, 16), int(index, 16)
    except ValueError:
        return None


class WAL:
    def __init__(self, dirpath: str, segment_bytes: int = SEGMENT_BYTES,
                 fill_ahead: int = 0):
        self.dir = dirpath
        self.fill_ahead = fill_ahead  # 0: no zero-filler (tools, tests, --unsafe-no-fsync)
        self.filler: Optional[ZeroFiller] = None
        self.segment_bytes = segment_bytes
        self.unsafe_no_fsync = False   # --unsafe-no-fsync: never fdatasync (data loss on crash)
        self._fd = -1
        self._seq = 0
        self._offset = 0
        self._crc = 0
        self._last_index = 0
        self._segments: list[tuple[int, int, str]] = []  # (seq, first index, path)
        self.on_fsync = None          # (seconds) after each fdatasync of a batch (metrics)
        self.written_bytes = 0        # bytes appended since open (etcd_disk_wal_write_bytes_total)
        # Re-written at the head of every new segment, so releasing old segments
        # never loses the member identity, the hard state or the snapshot mark.
        self._meta = (0, 0)
        self._state = HardState()
        self._snap = (0, 0)

    # ---- open / replay ----

    def open(self, member_id: int = 0, cluster_id: int = 0) -> WalContents:
        """Read everything, repair a torn tail, and position for appending.
        A new directory gets its first segment with a META record."""
        private_dirs(self.dir)
        names = sorted((p, n) for n in os.listdir(self.dir) if (p := _parse_name(n)))
        out = WalContents()
        if self.fill_ahead:
            self.filler = ZeroFiller(lambda: (self._seq, self._offset), self.fill_ahead)
        if not names:
            self._meta = (member_id, cluster_id)
            self._create_segment(0, 0, prev_crc=0)
            out.member_id, out.cluster_id = member_id, cluster_id
            return out
        prev_crc = None
        for i, ((seq, first), name) in enumerate(names):
            path = os.path.join(self.dir, name)
            last = i == len(names) - 1
            with open(path, "rb") as f:
                buf = f.read()
            records, end, crc, stop = walcodec.decode_records(buf, 0, 0)
            if not records or records[0][0] != REC_CRC:
                if last and stop in ("zero", "eof", "short") and not any(buf[end:]):
                    records, end, crc = [], 0, prev_crc or 0  # segment created, never written
                else:
                    raise WalCorruptError(f"{path}: segment does not start with a CRC record")
            else:
                seed = _CRC.unpack(records[0][1])[0]
                if prev_crc is not None and seed != prev_crc:
                    raise WalCorruptError(f"{path}: CRC chain broken between segments")
                # Records after the first chain from the seed, not from the CRC record itself.
                rest, end, crc, stop = walcodec.decode_records(buf, end, seed)
                records = records[:1] + rest
            if stop in ("short", "crc"):
                tail_start = end
                if not last or any(buf[self._tail_after(buf, end):]):
                    raise WalCorruptError(
                        f"{path}: corrupt record at offset {end} "
                        f"({'bad checksum' if stop == 'crc' else 'truncated record'}) "
                        "followed by more data; refusing to start")
                if stop == "crc" and not self._torn(buf, end):
                    raise WalCorruptError(
                        f"{path}: the last record (offset {end}) fails its checksum but was "
                        "written in full (no unwritten sector): the disk changed it after "
                        "it was acknowledged; refusing to start (restore the member from a "
                        "snapshot with 'kvcoreutl snapshot restore', or remove it and add "
                        "it back)")
                nonzero = len(buf.rstrip(b"\0"))
                out.repaired_bytes += max(0, nonzero - tail_start)
                with open(path, "r+b") as f:  # zero the torn tail so the next append is clean
                    f.seek(tail_start)
                    f.write(bytes(len(buf) - tail_start))
                    f.flush()
                    os.fsync(f.fileno())
            elif stop == "zero" and any(buf[end:]):
                raise WalCorruptError(f"{path}: data found after the end of the log at offset {end}")
            for rtype, payload in records:
                self._apply_record(out, rtype, payload)
            prev_crc = crc
            self._segments.append((seq, first, path))
            if last:
                self._seq, self._offset, self._crc = seq, end, crc
                self._fd = os.open(path, os.O_RDWR)
                if self.filler is not None:
                    self.filler.switch(path, seq, end, max(len(buf), self.segment_bytes))
                    self.filler.poke(end)
        self._last_index = out.entries[-1][0] if out.entries else out.snapshot_index
        self._meta = (out.member_id, out.cluster_id)
        self._state = out.state
        self._snap = (out.snapshot_index, out.snapshot_term)
        return out

    @staticmethod
    def _tail_after(buf: bytes, end: int) -> int:
        """Where the data that must be zero for a torn tail begins: past the bad
        record's claimed extent when that lies inside the file."""
        if end + 9 <= len(buf):
            n = int.from_bytes(buf[end:end + 4], "little")
            if end + 9 + n <= len(buf):
                return end + 9 + n
        return len(buf)

    @staticmethod
    def _torn(buf: bytes, end: int) -> bool:
        """A record failing its CRC is a torn write (never completed, so never
        acknowledged) when part of it never reached the disk: its extent runs past
        the file, or one of its sector-aligned pieces is still all zeros (segments
        are preallocated with zeros). A complete record with wrong bytes is damage
        done after the write (etcd's isTornEntry makes the same distinction)."""
        if end + 9 > len(buf):
            return True
        stop = end + 9 + int.from_bytes(buf[end:end + 4], "little")
        if stop > len(buf):
            return True
        at = end
        while at < stop:
            nxt = min(stop, (at // SECTOR + 1) * SECTOR)
            if not any(buf[at:nxt]):
                return True
            at = nxt
        return False

    @staticmethod
    def _apply_record(out: WalContents, rtype: int, payload: bytes) -> None:
        if rtype == REC_ENTRY:
            e = walcodec.decode_entry(payload)
            entries = out.entries
            if entries and e[0] <= entries[-1][0]:
                # A rewritten suffix: drop everything from this index on.
                first = entries[0][0]
                del entries[max(0, e[0] - first):]
            entries.append(e)
        elif rtype == REC_STATE:
            out.state = HardState(*_STATE.unpack(payload))
        elif rtype == REC_META:
            out.member_id, out.cluster_id = _META.unpack(payload)
        elif rtype == REC_SNAPSHOT:
            out.snapshot_index, out.snapshot_term = _SNAP.unpack(payload)
            out.entries = [e for e in out.entries if e[0] > out.snapshot_index]
        elif rtype == REC_CRC:
            pass
        else:
            raise WalCorruptError(f"unknown WAL record type {rtype}")

    # ---- append ----

    def save(self, state: Optional[HardState], entries: list, sync: bool = True) -> None:
        """Append entries (and the hard state) durably: one write, one fdatasync
        (skipped when ``sync`` is false, for a hard state that may be lost)."""
        job = self.reserve(state, entries)
        if job is None:
            return
        fd, blob, offset = job
        try:
            os.pwrite(fd, blob, offset)
            if sync:
                self._sync()
        except OSError as e:
            raise OSError(e.errno, f"WAL write to {self.current_path()} failed: "
                                   f"{e.strerror}") from None

    def reserve(self, state: Optional[HardState], entries: list,
                allow_cut: bool = True) -> Optional[tuple]:
        """Encode a batch and take its place at the end of the log, leaving the write
        itself to the caller: -> (fd, bytes, offset), to be written (and synced)
        before the next reserve. None when there is nothing to write, or when the
        batch needs a new segment and ``allow_cut`` is false (use save() then: cutting
        a segment creates and syncs files)."""
        if not entries and state is None:
            return None
        tail = None if state is None else (
            REC_STATE, _STATE.pack(state.term, state.vote, state.commit))
        # The hard state is framed in the same buffer: appending it to the entries'
        # bytes would copy a large batch once more.
        blob, crc = walcodec.encode_entries(entries, self._crc, tail)
        if self._offset + len(blob) > self.segment_bytes and self._offset > 64:
            if not allow_cut:
                return None
            self._cut(entries[0][0] if entries else self._last_index + 1)
            return self.reserve(state, entries)
        offset = self._offset
        self._offset = end = offset + len(blob)   # published before the filler is asked
        f = self.filler
        if f is not None and end > f.trigger:
            f.poke(end)
        self.written_bytes += len(blob)
        self._crc = crc
        if entries:
            self._last_index = entries[-1][0]
        if state is not None:
            self._state = state
        return self._fd, blob, offset

    def current_path(self) -> str:
        """The segment being appended to (for error messages)."""
        return self._segments[-1][2] if self._segments else self.dir

    def save_snapshot(self, index: int, term: int) -> None:
        self._snap = (index, term)
        self._append_records([(REC_SNAPSHOT, _SNAP.pack(index, term))])
        self._sync()

    def _append_records(self, records) -> None:
        parts = []
        crc = self._crc
        for rtype, payload in records:
            rec, crc = walcodec.encode_record(rtype, payload, crc)
            parts.append(rec)
        blob = b"".join(parts)
        offset = self._offset
        self._offset = end = offset + len(blob)   # published before the filler is asked
        f = self.filler
        if f is not None and end > f.trigger:
            f.poke(end)
        os.pwrite(self._fd, blob, offset)
        self._crc = crc

    def _sync(self) -> None:
        if not self.unsafe_no_fsync:
            t0 = time.perf_counter()
            delay = failpoints.sleep_seconds("wal-fsync") if failpoints.ACTIVE else 0.0
            if delay:
                time.sleep(delay)   # a slow disk, on this (I/O) thread
            os.fdatasync(self._fd)
            self.fsync_took(time.perf_counter() - t0)

    def fsync_took(self, seconds: float) -> None:
        """An fdatasync of the WAL finished: etcd's histogram (on_fsync) and, over a
        second, etcd's "slow fdatasync" warning."""
        if seconds > WARN_SYNC_SECONDS:
            log.warning("slow fdatasync", extra=logs.fields(
                took=f"{seconds:.9f}".rstrip("0").rstrip(".") + "s", expected_duration="1s"))
        if self.on_fsync is not None:
            self.on_fsync(seconds)

    def _create_segment(self, seq: int, first_index: int, prev_crc: int) -> None:
        path = os.path.join(self.dir, _segment_name(seq, first_index))
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.segment_bytes)
        except OSError:
            pass  # filesystems without fallocate: the file grows as written
        rec, crc = walcodec.encode_record(REC_CRC, _CRC.pack(prev_crc), 0)
        head = [rec]
        crc = prev_crc
        st = self._state
        for rtype, payload in ((REC_META, _META.pack(*self._meta)),
                               (REC_STATE, _STATE.pack(st.term, st.vote, st.commit)),
                               (REC_SNAPSHOT, _SNAP.pack(*self._snap))):
            r, crc = walcodec.encode_record(rtype, payload, crc)
            head.append(r)
        rec = b"".join(head)
        filled = len(rec)
        if self.filler is not None:   # the first zeros ride on the header's fsync
            filled = max(filled, min(FIRST_FILL, self.segment_bytes))
        os.pwrite(fd, rec + bytes(filled - len(rec)), 0)
        os.fsync(fd)
        os.rename(tmp, path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        if self._fd >= 0:
            os.close(self._fd)
        if self.filler is not None:   # before the new offset and seq are published
            self.filler.switch(path, seq, filled, self.segment_bytes)
        self._fd = fd
        self._offset, self._crc = len(rec), crc
        self._seq = seq               # after the offset: the filler reads seq, offset
        self._segments.append((seq, first_index, path))
        if self.filler is not None:
            self.filler.poke(self._offset)

    def _cut(self, next_index: int) -> None:
        self._sync()
        self._create_segment(self._seq + 1, next_index, prev_crc=self._crc)

    def release_before(self, index: int, keep: int = 0) -> int:
        """Delete segments all of whose entries are < index (keeping the live one),
        while more than ``keep`` segments remain (etcd's --max-wals; 0 = delete every
        released segment). Returns how many were removed."""
        removed = 0
        while (len(self._segments) > max(1, keep) and self._segments[1][1] <= index):
            _, _, path = self._segments.pop(0)
            os.unlink(path)
            removed += 1
        return removed

    def close(self) -> None:
        if self.filler is not None:
            self.filler.close()
            self.filler = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
