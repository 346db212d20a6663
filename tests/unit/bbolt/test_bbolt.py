"""The bbolt writer and reader: files the real bbolt library accepts, read back as
written; etcd 3.5.1's own snapshot read through the reader."""
import os
import random
import shutil
import subprocess

import pytest

from kvcore.bbolt import InvalidDatabase, Reader, Writer
from tests import bbolt_tool, servers

ETCD351 = "/opt/etcd351/bin"


def _write(path, buckets):
    with open(path, "wb") as f:
        w = Writer(f)
        for name, items in buckets.items():
            w.bucket(name, iter(items))
        return w.close()


def _sample(rng):
    return {
        b"key": [(i.to_bytes(8, "big") + b"_" + bytes(8), rng.randbytes(rng.randint(0, 400)))
                 for i in range(3000)],
        b"empty": [],
        # values over a page: leaf pages with overflow
        b"big": [(b"a", b"x" * 9000), (b"b", b""), (b"c", b"y" * 4090)],
        # long keys: branch pages of few entries, a tree three levels deep
        b"deep": [(b"%06d" % i + b"k" * 1500, b"v%d" % i) for i in range(200)],
        b"meta": [(b"consistent_index", bytes(8)), (b"term", bytes(8))],
    }


def test_written_file_passes_bbolt_check_and_reads_back(tmp_path):
    data = _sample(random.Random(7))
    path = str(tmp_path / "db")
    size = _write(path, data)
    assert os.path.getsize(path) == size and size % 4096 == 0
    check = bbolt_tool.run("check", path)
    assert check.returncode == 0 and check.stdout.strip() == "OK", check.stdout + check.stderr
    listed = bbolt_tool.run("buckets", path)
    assert listed.stdout.split() == sorted(n.decode() for n in data)
    with Reader(path) as r:
        assert r.buckets() == sorted(data)
        for name, items in data.items():
            assert list(r.bucket(name)) == items
        assert r.bucket(b"nope") is None
        assert r.size == size


def test_writer_refuses_unsorted_items(tmp_path):
    with open(tmp_path / "db", "wb") as f:
        w = Writer(f)
        with pytest.raises(ValueError):
            w.bucket(b"key", iter([(b"b", b""), (b"a", b"")]))


def test_reader_rejects_what_is_not_bbolt(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(InvalidDatabase, match="invalid database"):
        Reader(str(junk))
    small = tmp_path / "small"
    small.write_bytes(b"x" * 100)
    with pytest.raises(InvalidDatabase):
        Reader(str(small))
    # a valid file cut short
    good = str(tmp_path / "good")
    _write(good, _sample(random.Random(1)))
    cut = tmp_path / "cut"
    cut.write_bytes(open(good, "rb").read()[:3 * 4096])
    with pytest.raises(InvalidDatabase):
        Reader(str(cut))


def test_reads_a_real_etcd_snapshot(tmp_path):
    """etcd's files have inline buckets and no freelist page."""
    et = servers.start_etcd(str(tmp_path / "etcd"), binary=f"{ETCD351}/etcd")
    try:
        for i in range(20):
            assert et.etcdctl("put", f"k{i}", f"v{i}")[0] == 0
        assert et.etcdctl("del", "k3")[0] == 0
        snap = str(tmp_path / "snap.db")
        assert et.etcdctl("snapshot", "save", snap)[0] == 0
    finally:
        et.stop()
    db = str(tmp_path / "snap.bbolt")
    with open(snap, "rb") as f, open(db, "wb") as out:
        body = f.read()
        out.write(body[:-32])   # without the sha256 trailer
    with Reader(db) as r:
        assert {b"key", b"meta", b"members", b"cluster", b"lease"} <= set(r.buckets())
        keys = list(r.bucket(b"key"))
        assert len(keys) == 21 and keys[-1][0].endswith(b"t")
        assert dict(r.bucket(b"cluster"))[b"clusterVersion"] == b"3.5.0"
