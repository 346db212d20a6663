"""--max-wals / --max-snapshots: how many released WAL segments and snapshot files
a member keeps (etcd: the newest N; 0 = unlimited)."""
import os

import pytest

from kvcore.storage import snap as snapfiles
from kvcore.storage.wal import WAL, HardState


def _wal_with_segments(path, n_entries=200):
    wal = WAL(str(path), segment_bytes=4096)
    wal.open(member_id=1, cluster_id=2)
    for i in range(1, n_entries):
        wal.save(HardState(1, 1, i), [(i, 1, 0, b"v%03d" % i * 20)])
    return wal


def _segments(path):
    return sorted(n for n in os.listdir(path) if n.endswith(".wal"))


@pytest.mark.parametrize("keep, left", [(0, 1), (1, 1), (3, 3)])
def test_released_wal_segments_beyond_max_wals_are_deleted(tmp_path, keep, left):
    wal = _wal_with_segments(tmp_path)
    try:
        before = _segments(tmp_path)
        assert len(before) >= 5
        wal.release_before(10 ** 6, keep=keep)
        after = _segments(tmp_path)
        assert len(after) == left and after == before[-left:]
    finally:
        wal.close()


def test_wal_segments_still_needed_are_kept(tmp_path):
    wal = _wal_with_segments(tmp_path)
    try:
        before = _segments(tmp_path)
        wal.release_before(1, keep=0)       # nothing is behind index 1
        assert _segments(tmp_path) == before
    finally:
        wal.close()


@pytest.mark.parametrize("keep, left", [(0, 7), (2, 2), (5, 5)])
def test_snapshot_files_beyond_max_snapshots_are_deleted(tmp_path, keep, left):
    for i in range(1, 8):
        (tmp_path / snapfiles._name(1, i * 100)).write_bytes(b"x")
    snapfiles.release_older(str(tmp_path), keep_index=700, keep=keep)
    names = sorted(os.listdir(tmp_path))
    assert len(names) == left
    assert names[-1] == snapfiles._name(1, 700)
