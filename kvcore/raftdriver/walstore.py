"""The server's durable log for the Raft driver (the ``store`` of driver.py): the WAL
(kvcore/storage/wal.py) and snapshot files (kvcore/storage/snap.py).

A Ready's entries and hard state become one WAL append written by the native writer
thread (ext/walwriter.pyx: pwrite + fdatasync without the GIL), its completion seen
through an fd the event loop watches; or, when the driver says the loop has nothing
to overlap with it (``inline``), on the loop's own thread with the GIL released, with
the driver's ``meanwhile`` between the write and its fdatasync. A hard state whose only
change is the commit index is written right here without a sync. Snapshots and segment cuts, both rare and
file-creating, run on a one-thread executor.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Callable, Optional

from kvcore import failpoints
from kvcore.raft.types import Entry, HardState
from kvcore.storage import snap as snapfiles
from kvcore.storage.codec import walwriter
from kvcore.storage.wal import WAL, HardState as WalHardState, WalContents


class WalStore:
    def __init__(self, wal: WAL, snap_dir: str, contents: WalContents, loop, *,
                 max_snapshots: int = 5, max_wals: int = 5) -> None:
        self.wal = wal
        self.snap_dir = snap_dir
        self.max_snapshots = max_snapshots   # --max-snapshots / --max-wals (0 = unlimited)
        self.max_wals = max_wals
        self._contents = contents
        self.loop = loop
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wal")
        self._writer = walwriter.WalWriter()
        if failpoints.ACTIVE is not None:
            self._writer.set_fsync_delay(failpoints.sleep_seconds("wal-fsync"))
        loop.add_reader(self._writer.fileno(), self._writer_done)
        self._done: Optional[Callable] = None
        self.on_snap_saved: Optional[Callable] = None   # (marshal, fsync, total s) of a .snap

    def load(self):
        c, self._contents = self._contents, None
        snap = None
        if c.snapshot_index:
            snap = snapfiles.load(self.snap_dir, c.snapshot_index, c.snapshot_term)
            if snap is None:
                raise RuntimeError(f"snapshot file for index {c.snapshot_index} is missing")
        ents = [Entry(t, i, et, d) for i, t, et, d in c.entries]
        return snap, ents, HardState(c.state.term, c.state.vote, c.state.commit)

    def bootstrap(self, hs: HardState, entries: list) -> None:
        self.wal.save(WalHardState(hs.term, hs.vote, hs.commit),
                      [(e.index, e.term, e.type, e.data) for e in entries])

    def save(self, rd, sync: bool, done: Callable, inline: bool = False,
             meanwhile: Optional[Callable] = None) -> bool:
        hs = rd.hard_state
        whs = WalHardState(hs.term, hs.vote, hs.commit) if hs is not None else None
        if rd.snapshot is None:
            ents = [(e.index, e.term, e.type, e.data) for e in rd.entries]
            job = self.wal.reserve(whs, ents, allow_cut=False)
            if job is not None:
                fd, blob, offset = job
                if failpoints.ACTIVE is not None:
                    failpoints.hit("wal-before-write")
                if not sync:
                    os.pwrite(fd, blob, offset)
                    return True
                if inline and (failpoints.ACTIVE is None or failpoints.only("apply-staged")):
                    return self._write_now(fd, blob, offset, meanwhile)
                self._done = done
                self._writer.submit(fd, blob, offset, not self.wal.unsafe_no_fsync)
                return False
        fut = self.loop.run_in_executor(self._io, self._persist, rd, sync)
        fut.add_done_callback(lambda f: done(f.exception()))
        return False

    def _write_now(self, fd: int, blob: bytes, offset: int, meanwhile) -> bool:
        fsync = not self.wal.unsafe_no_fsync
        err = self._writer.write_now(fd, blob, offset, fsync, meanwhile)
        if err:
            raise OSError(err, f"WAL write to {self.wal.current_path()} failed: "
                               f"{os.strerror(err)}")
        if fsync:
            self.wal.fsync_took(self._writer.sync_seconds())
        return True

    def _writer_done(self) -> None:
        err = self._writer.finish()
        if err == -1 or self._done is None:
            return
        done, self._done = self._done, None
        if not err and not self.wal.unsafe_no_fsync:
            self.wal.fsync_took(self._writer.sync_seconds())   # etcd's WAL fsync histogram
        if failpoints.ACTIVE is not None and not err:
            if not failpoints.sleep_seconds("wal-fsync"):   # a sleep is the writer's
                failpoints.hit("wal-fsync")
            failpoints.hit("wal-after-fsync")
        done(OSError(err, f"WAL write to {self.wal.current_path()} failed: "
                          f"{os.strerror(err)}") if err else None)

    def _persist(self, rd, sync: bool) -> None:
        """On the I/O thread: snapshot file, entries and hard state, one fdatasync
        (none if ``sync`` is false: a commit-index-only change)."""
        if failpoints.ACTIVE is not None:
            failpoints.hit("wal-before-write")
        if rd.snapshot is not None:
            snapfiles.save(self.snap_dir, rd.snapshot)
            self.wal.save_snapshot(rd.snapshot.metadata.index, rd.snapshot.metadata.term)
        hs = rd.hard_state
        self.wal.save(WalHardState(hs.term, hs.vote, hs.commit) if hs is not None else None,
                      [(e.index, e.term, e.type, e.data) for e in rd.entries], sync=sync)
        if failpoints.ACTIVE is not None:
            if not failpoints.sleep_seconds("wal-fsync"):   # a sleep is in wal's fsync
                failpoints.hit("wal-fsync")
            failpoints.hit("wal-after-fsync")

    def save_snapshot(self, snap, before: Optional[Callable], done: Callable) -> None:
        index = snap.metadata.index

        def work() -> int:
            if before is not None:
                before()
            snapfiles.save(self.snap_dir, snap, self.on_snap_saved)
            self.wal.save_snapshot(index, snap.metadata.term)
            removed = self.wal.release_before(index, keep=self.max_wals)
            snapfiles.release_older(self.snap_dir, index, keep=self.max_snapshots)
            return removed

        def finished(f) -> None:
            err = f.exception()
            done(err, 0 if err is not None else f.result())

        self.loop.run_in_executor(self._io, work).add_done_callback(finished)

    def close(self) -> None:
        self._io.shutdown(wait=True)
        self.loop.remove_reader(self._writer.fileno())
        self._writer.close()
