"""The backend's transaction interface (kvcore/storage/backend.py)."""
import os

from kvcore.storage import backend as be


def test_compacted_copy_carries_the_meta_it_was_taken_with(tmp_path):
    b = be.Backend(str(tmp_path / "db"), map_size=1 << 24)
    with b.begin_write() as tx:
        tx.put(be.META_CONSISTENT_INDEX, be.u64(42), db=b.meta)
        tx.put(be.META_TERM, be.u64(7), db=b.meta)
        for i in range(100):
            tx.put(be.rev_key(i + 2, 0), b"v" * 100, db=b.key)
    copy = tmp_path / "copy"
    os.makedirs(copy)
    meta = b.copy_compacted(str(copy))
    assert be.from_u64(meta[be.META_CONSISTENT_INDEX]) == 42
    assert be.from_u64(meta[be.META_TERM]) == 7
    assert meta[be.META_CONF_STATE] is None
    with b.begin_read() as tx:
        assert b.get_meta(be.META_CONSISTENT_INDEX, tx) == 42
        assert b.get_meta(be.META_SCHEDULED_COMPACT, tx) == 0
    assert b.high_water_bytes() >= os.path.getsize(copy / be.DATA_FILE)
    b.close()


def test_a_read_only_view_opens_reads_and_closes(tmp_path):
    """As a worker's (LMDB allows one environment per file and process, so the
    writer is closed here; in kvcore they are different processes)."""
    path = str(tmp_path / "db")
    w = be.Backend(path, map_size=1 << 24)
    with w.begin_write() as tx:
        tx.put(be.META_MEMBER_ID, be.u64(9), db=w.meta)
    size = w.map_size
    w.close()
    r = be.Backend(path, map_size=size, readonly=True)
    with r.begin_read() as tx:
        assert r.get_meta(be.META_MEMBER_ID, tx) == 9
    r.close()   # a reader never syncs (it cannot write)
