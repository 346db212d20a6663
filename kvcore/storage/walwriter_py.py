"""Plain-Python twin of ext/walwriter.pyx: the same interface on a Python thread
(it needs the GIL to start and finish each job, which the compiled one avoids)."""
from __future__ import annotations

import os
import queue
import threading
import time


class WalWriter:
    def __init__(self):
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = False
        self._error = 0
        self._sync_seconds = 0.0
        self._fsync_delay = 0.0
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._efd

    def submit(self, fd: int, blob: bytes, offset: int, sync: bool) -> None:
        if self._pending:
            raise RuntimeError("a WAL write is already in progress")
        self._pending = True
        self._jobs.put((fd, blob, offset, sync))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            err, took = _write(*job, self._fsync_delay)
            self._error = err
            self._sync_seconds = took
            self._pending = False
            os.eventfd_write(self._efd, 1)

    def write_now(self, fd: int, blob: bytes, offset: int, sync: bool, meanwhile=None) -> int:
        """Write (and fdatasync) on the calling thread; -> errno (0: done).
        ``meanwhile()`` runs between the write and its fdatasync (the compiled one
        also asks the device to start writing first); the fdatasync runs even if it
        raises."""
        if self._pending:
            raise RuntimeError("a WAL write is already in progress")
        if meanwhile is None:
            err, self._sync_seconds = _write(fd, blob, offset, sync, self._fsync_delay)
            return err
        err, self._sync_seconds = _write(fd, blob, offset, False, 0.0)
        if err:
            return err
        try:
            meanwhile()
        finally:
            if sync:
                err, self._sync_seconds = _write(fd, b"", offset, True, self._fsync_delay)
        return err

    def finish(self) -> int:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            pass
        if self._pending:
            return -1
        return self._error

    def sync_seconds(self) -> float:
        """Duration of the finished job's fdatasync (etcd_disk_wal_fsync_duration_seconds)."""
        return self._sync_seconds

    def set_fsync_delay(self, seconds: float) -> None:
        """Sleep this long before each fdatasync, counted in its duration: a slow disk
        (the wal-fsync failpoint). On the writer thread the loop runs meanwhile;
        write_now sleeps on the caller's thread."""
        self._fsync_delay = seconds

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
            os.close(self._efd)


def _write(fd: int, blob: bytes, offset: int, sync: bool, delay: float):
    """pwrite all of blob at offset, then (if sync) sleep ``delay`` and fdatasync;
    -> (errno or 0, the sync's duration with the delay, 0 without one)."""
    try:
        view = memoryview(blob)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        if not sync:
            return 0, 0.0
        t0 = time.perf_counter()
        if delay:
            time.sleep(delay)
        os.fdatasync(fd)
        return 0, time.perf_counter() - t0
    except OSError as e:
        return e.errno or -2, 0.0
