"""A member's live WAL segment is written (zeros) and synced ahead of its log, so an
append's fdatasync does not convert preallocated extents (kvcore/storage/walfill.py);
with --unsafe-no-fsync nothing is filled. Seen through the filesystem's extent map
(FIEMAP, `filefrag -v`): written extents against fallocated 'unwritten' ones."""
from __future__ import annotations

import glob
import os
import re
import subprocess
import time

from kvcore.storage import walfill
from tests import servers

BLOCK = 4096


def written_prefix(path: str) -> int:
    """Bytes from the file's start covered by written (not 'unwritten') extents."""
    out = subprocess.run(["filefrag", "-v", "-b4096", path], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    end = 0
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s+(\d+)\.\.\s*(\d+):.*?:\s+(\d+):\s*(.*)$", line)
        if not m:
            continue
        first, last, flags = int(m[1]), int(m[2]), m[4]
        if first * BLOCK != end or "unwritten" in flags:
            break
        end = (last + 1) * BLOCK
    return end


def live_segment(data_dir: str) -> str:
    return sorted(glob.glob(os.path.join(data_dir, "member", "wal", "*.wal")))[-1]


def wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_live_segment_is_filled_ahead_and_survives_a_restart(tmp_path):
    data = str(tmp_path / "kv.etcd")
    srv = servers.start_kvcore(data)
    try:
        for i in range(20):
            assert srv.etcdctl("put", f"k{i}", "v" * 100)[0] == 0
        seg = live_segment(data)
        assert wait_for(lambda: written_prefix(seg) >= walfill.AHEAD), \
            f"only {written_prefix(seg)} bytes written ahead"
        srv = srv.restart()   # the filler resumes from the write offset; the log reads
        rc, out, _ = srv.etcdctl("get", "k", "--prefix", "--keys-only")
        assert rc == 0 and len(out.split()) == 20
        assert srv.etcdctl("put", "after", "1")[0] == 0
        assert written_prefix(live_segment(data)) >= walfill.AHEAD
    finally:
        srv.stop()


def test_nothing_is_filled_without_fsync(tmp_path):
    data = str(tmp_path / "kv.etcd")
    srv = servers.start_kvcore(data, extra=("--unsafe-no-fsync",))
    try:
        for i in range(20):
            assert srv.etcdctl("put", f"k{i}", "v" * 100)[0] == 0
        time.sleep(0.5)   # what a filler would have done by now (it would be well ahead)
        assert written_prefix(live_segment(data)) < walfill.AHEAD // 4
    finally:
        srv.stop()
