"""Damaged data files end cleanly: the member refuses to start with one message
naming the damaged file and the fix, never a signal (SIGBUS from a truncated map)
or a traceback; and the fix it names works (a snapshot restored by kvcoreutl)."""
import os
import shutil
import subprocess
import sys

import pytest

from kvcore.storage import walcodec_py
from kvcore.storage.wal import REC_CRC
from tests import servers

KEYS = 30


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A member's data dir with KEYS keys, cleanly stopped, and a snapshot of it."""
    base = tmp_path_factory.mktemp("storage-faults")
    srv = servers.start_kvcore(str(base / "kv.etcd"), workers=1)
    try:
        for i in range(KEYS):
            assert srv.etcdctl("put", f"k{i:02d}", "v" * 200)[0] == 0
        snap = str(base / "snap.db")
        assert srv.etcdctl("snapshot", "save", snap)[0] == 0
    finally:
        srv.stop()
    return str(base / "kv.etcd"), snap, srv.argv


def _copy(populated, tmp_path):
    d = str(tmp_path / "kv.etcd")
    shutil.copytree(populated[0], d)
    return d


def _start_refused(populated, data_dir):
    """Start the member on (its copied) ``data_dir`` expecting a refusal: -> stderr.
    Same flags as the member that wrote it (its ID comes from its peer URLs)."""
    argv = list(populated[2])
    argv[argv.index("--data-dir") + 1] = data_dir
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode > 0, f"not refused cleanly (rc {p.returncode}):\n{p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "refusing to start" in p.stderr
    assert "kvcoreutl snapshot restore" in p.stderr
    return p.stderr


def _db_file(data_dir):
    return os.path.join(data_dir, "member", "snap", "db", "data.mdb")


def _last_wal(data_dir):
    d = os.path.join(data_dir, "member", "wal")
    return os.path.join(d, sorted(n for n in os.listdir(d) if n.endswith(".wal"))[-1])


def _records(path):
    """[(offset, length)] of the records written in a WAL segment."""
    with open(path, "rb") as f:
        buf = f.read()
    out, at = [], 0
    recs, end, crc, _ = walcodec_py.decode_records(buf, 0, 0)
    assert recs and recs[0][0] == REC_CRC
    first = len(walcodec_py.encode_record(REC_CRC, recs[0][1], 0)[0])
    out.append((0, first))
    seed = int.from_bytes(recs[0][1], "little")
    at = first
    while True:
        rs, end, seed, stop = walcodec_py.decode_records(buf[:at + 9 + int.from_bytes(
            buf[at:at + 4], "little")], at, seed)
        if not rs:
            return out
        out.append((at, end - at))
        at = end


def test_truncated_lmdb_file_is_refused_and_the_named_fix_works(populated, tmp_path):
    d = _copy(populated, tmp_path)
    db = _db_file(d)
    os.truncate(db, os.path.getsize(db) // 2)
    err = _start_refused(populated, d)
    assert db in err and "truncated" in err
    # The fix the message names: restore the snapshot into a new data dir.
    restored = str(tmp_path / "restored.etcd")
    p = subprocess.run([sys.executable, "-m", "kvcore.utl", "snapshot", "restore",
                        populated[1], "--data-dir", restored],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    srv = servers.start_kvcore(restored, workers=1)
    try:
        rc, out, _ = srv.etcdctl("get", "k", "--prefix", "--keys-only")
        assert rc == 0 and sorted(out.split()) == [f"k{i:02d}" for i in range(KEYS)]
    finally:
        srv.stop()


def test_garbage_filled_lmdb_file_is_refused(populated, tmp_path):
    d = _copy(populated, tmp_path)
    db = _db_file(d)
    size = os.path.getsize(db)
    with open(db, "wb") as f:
        f.write(os.urandom(size))
    err = _start_refused(populated, d)
    assert db in err and "not a valid LMDB data file" in err


@pytest.mark.parametrize("page", [0, 1])
def test_damaged_lmdb_meta_page_is_refused(populated, tmp_path, page):
    d = _copy(populated, tmp_path)
    db = _db_file(d)
    with open(db, "r+b") as f:
        f.seek(page * 4096 + 16)       # the meta's magic and version
        f.write(b"\xff" * 8)
    err = _start_refused(populated, d)
    assert db in err and "meta page" in err


def _root_page(db_file: str, name: bytes) -> int:
    """The root page of the named DB: its record in LMDB's main DB (an MDB_db, root
    page number last)."""
    import lmdb
    env = lmdb.open(os.path.dirname(db_file), readonly=True, lock=False, max_dbs=16)
    try:
        with env.begin() as txn:
            rec = txn.get(name)
    finally:
        env.close()
    return int.from_bytes(rec[40:48], "little")


@pytest.mark.parametrize("damage", ["overwritten", "node-offsets"])
def test_damaged_lmdb_data_page_is_refused(populated, tmp_path, damage):
    """A data page (the key DB's root, where every key lives), not a meta page: LMDB
    reads it only when a request reaches it, so the start-up walk must see it."""
    d = _copy(populated, tmp_path)
    db = _db_file(d)
    page = _root_page(db, b"key")
    assert page >= 2
    with open(db, "r+b") as f:
        f.seek(page * 4096)
        if damage == "overwritten":
            f.write(bytes((i * 7 + 3) & 0xFF for i in range(4096)))
        else:
            f.seek(page * 4096 + 16)         # the node offsets: into the header
            f.write(b"\x02\x00" * 4)
    err = _start_refused(populated, d)
    assert db in err and "damaged data page" in err and f"page {page}" in err
    assert "Signals" not in err and "Segmentation" not in err


def test_wal_cut_in_the_middle_is_refused(populated, tmp_path):
    """The WAL cut short (a lost end, not a torn write): the backend has applied
    entries the WAL no longer holds. Starting would time out every write forever."""
    d = _copy(populated, tmp_path)
    wal = _last_wal(d)
    recs = _records(wal)
    off, _ = recs[len(recs) // 2]
    os.truncate(wal, off + 5)          # inside a record: looks like a torn tail
    err = _start_refused(populated, d)
    assert wal.rsplit("/", 1)[0] in err and "missing from the WAL" in err
    assert _db_file(d) in err


def test_bad_checksum_in_the_last_complete_record_is_refused(populated, tmp_path):
    """Written in full, then changed on disk: corruption, not a torn write."""
    d = _copy(populated, tmp_path)
    wal = _last_wal(d)
    off, n = _records(wal)[-1]
    with open(wal, "r+b") as f:
        f.seek(off + 9)
        f.write(b"\x5a" * (n - 9))     # the payload replaced, no byte left unwritten
    err = _start_refused(populated, d)
    assert wal in err and "fails its checksum but was written in full" in err
