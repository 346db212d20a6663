"""The WAL writer thread (compiled and plain-Python twin) and WAL.reserve()."""
from __future__ import annotations

import errno
import os
import select

import pytest

from kvcore import _ext
from kvcore.storage import walwriter_py
from kvcore.storage.wal import WAL, HardState

IMPLS = [pytest.param(walwriter_py, id="python"),
         pytest.param(_ext.compiled("walwriter"), id="compiled")]


def wait_done(w, timeout=10.0) -> int:
    """Wait for the completion signal like the event loop does; -> the job's errno."""
    while True:
        r, _, _ = select.select([w.fileno()], [], [], timeout)
        assert r, "the writer never signalled completion"
        err = w.finish()
        if err != -1:
            return err


@pytest.mark.parametrize("impl", IMPLS)
def test_writes_at_offset_and_signals(impl, tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    w = impl.WalWriter()
    try:
        w.submit(fd, b"hello", 0, True)
        assert wait_done(w) == 0
        w.submit(fd, b"world" * 100_000, 5, False)   # larger than one pwrite may take
        assert wait_done(w) == 0
        w.submit(fd, b"", 500_005, True)
        assert wait_done(w) == 0
    finally:
        w.close()
        os.close(fd)
    assert path.read_bytes() == b"hello" + b"world" * 100_000


@pytest.mark.parametrize("impl", IMPLS)
def test_write_now_runs_meanwhile_between_the_write_and_its_sync(impl, tmp_path):
    """``meanwhile`` sees the bytes written and runs before the fdatasync (the
    failpoint's delay, part of the sync, comes after it); if it raises, the sync
    still runs and the exception comes out; a failed write never calls it."""
    import time
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    ro = os.open(path, os.O_RDONLY)
    w = impl.WalWriter()
    seen = []

    def meanwhile():
        seen.append((os.pread(fd, 5, 0), time.monotonic()))
    try:
        w.set_fsync_delay(0.05)
        assert w.write_now(fd, b"hello", 0, True, meanwhile) == 0
        returned = time.monotonic()
        assert seen[0][0] == b"hello"
        assert returned - seen[0][1] >= 0.05 and w.sync_seconds() >= 0.05

        def fails():
            raise ValueError("staged work failed")
        w.set_fsync_delay(0)
        with pytest.raises(ValueError):
            w.write_now(fd, b"world", 5, True, fails)
        assert w.sync_seconds() > 0
        assert w.write_now(ro, b"x", 0, True, meanwhile) == errno.EBADF
        assert len(seen) == 1
        assert w.write_now(fd, b"!", 0, False, meanwhile) == 0   # no sync asked
        assert w.sync_seconds() == 0 and len(seen) == 2
    finally:
        w.close()
        os.close(fd)
        os.close(ro)
    assert path.read_bytes() == b"!elloworld"


@pytest.mark.parametrize("impl", IMPLS)
def test_write_now_writes_on_the_callers_thread(impl, tmp_path):
    """An inline write: done when the call returns, no completion signal, its fsync
    timed like the thread's; an error comes back as errno."""
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    ro = os.open(path, os.O_RDONLY)
    w = impl.WalWriter()
    try:
        assert w.write_now(fd, b"hello", 0, True) == 0
        assert w.sync_seconds() > 0
        assert w.write_now(fd, b"world" * 100_000, 5, False) == 0
        assert w.sync_seconds() == 0
        assert not select.select([w.fileno()], [], [], 0)[0]
        assert w.write_now(ro, b"x", 0, True) == errno.EBADF
        w.submit(fd, b"!", 0, True)              # the thread goes on as before
        assert wait_done(w) == 0
    finally:
        w.close()
        os.close(fd)
        os.close(ro)
    assert path.read_bytes() == b"!ello" + b"world" * 100_000


@pytest.mark.parametrize("impl", IMPLS)
def test_error_is_reported_not_raised(impl, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDONLY | os.O_CREAT)
    w = impl.WalWriter()
    try:
        w.submit(fd, b"x", 0, True)
        assert wait_done(w) == errno.EBADF
        w.submit(fd, b"y", 0, False)          # the writer goes on after a failure
        assert wait_done(w) == errno.EBADF
    finally:
        w.close()
        os.close(fd)


def test_reserved_batches_replay(tmp_path):
    """Batches written through reserve() + the writer read back like save()'s,
    across a segment cut that reserve() leaves to save()."""
    wal = WAL(str(tmp_path), segment_bytes=4096)
    wal.open(member_id=1, cluster_id=2)
    w = walwriter_py.WalWriter()
    expect = []
    cuts = 0
    try:
        for i in range(1, 60):
            ents = [(i, 1, 0, b"v%03d" % i * 20)]
            expect.extend(ents)
            job = wal.reserve(HardState(1, 1, i), ents, allow_cut=False)
            if job is None:
                cuts += 1
                wal.save(HardState(1, 1, i), ents)
                continue
            fd, blob, offset = job
            w.submit(fd, blob, offset, True)
            assert wait_done(w) == 0
    finally:
        w.close()
        wal.close()
    assert cuts >= 2
    again = WAL(str(tmp_path), segment_bytes=4096)
    got = again.open()
    again.close()
    assert got.entries == expect
    assert (got.state.term, got.state.vote, got.state.commit) == (1, 1, 59)
    assert (got.member_id, got.cluster_id) == (1, 2)


@pytest.mark.parametrize("impl", IMPLS)
def test_sync_seconds_is_the_last_jobs_fdatasync(impl, tmp_path):
    """What etcd_disk_wal_fsync_duration_seconds observes: > 0 after a synced job,
    0 after one without a sync."""
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    w = impl.WalWriter()
    try:
        w.submit(fd, b"x" * 4096, 0, True)
        assert wait_done(w) == 0
        assert w.sync_seconds() > 0
        w.submit(fd, b"y", 4096, False)
        assert wait_done(w) == 0
        assert w.sync_seconds() == 0
    finally:
        w.close()
        os.close(fd)
