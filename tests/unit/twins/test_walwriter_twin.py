"""ext/walwriter.pyx against its twin kvcore/storage/walwriter_py.py: the same random
sequence of positioned writes (synced or not, on a writable or a read-only fd) leaves
the same file and the same results."""
import os
import select
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore import _ext

C = _ext.compiled("walwriter")
P = _ext.twin("walwriter")

jobs = st.lists(st.tuples(st.binary(max_size=3000), st.integers(0, 8000), st.booleans(),
                          st.sampled_from(["rw", "rw", "rw", "ro"]),
                          st.booleans()),   # on the caller's thread (write_now)
                min_size=1, max_size=12)


def wait_done(w) -> int:
    while True:
        r, _, _ = select.select([w.fileno()], [], [], 10)
        assert r, "the writer never signalled completion"
        err = w.finish()
        if err != -1:
            return err


def run(mod, script):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "seg")
        rw = os.open(path, os.O_RDWR | os.O_CREAT)
        ro = os.open(path, os.O_RDONLY)
        w = mod.WalWriter()
        results = []
        try:
            for blob, offset, sync, kind, inline in script:
                fd = ro if kind == "ro" else rw
                if inline:
                    results.append(w.write_now(fd, blob, offset, sync))
                else:
                    w.submit(fd, blob, offset, sync)
                    results.append(wait_done(w))
        finally:
            w.close()
            os.close(rw)
            os.close(ro)
        with open(path, "rb") as f:
            return results, f.read()


@settings(max_examples=60, deadline=None)
@given(jobs)
def test_same_file_and_results(script):
    assert run(C, script) == run(P, script)


def test_fsync_delay_is_spent_on_the_thread_and_counted_as_fsync_time():
    """The wal-fsync failpoint's slow disk: the delay is part of the fsync's measured
    duration (etcd_disk_wal_fsync_duration_seconds), in both writers; a write
    without sync is not delayed."""
    for mod in (C, P):
        with tempfile.TemporaryDirectory() as d:
            fd = os.open(os.path.join(d, "seg"), os.O_RDWR | os.O_CREAT)
            w = mod.WalWriter()
            try:
                w.set_fsync_delay(0.05)
                w.submit(fd, b"x" * 100, 0, True)
                assert wait_done(w) == 0 and w.sync_seconds() >= 0.05
                w.submit(fd, b"y" * 100, 100, False)
                assert wait_done(w) == 0 and w.sync_seconds() == 0
            finally:
                w.close()
                os.close(fd)
