"""HashKV equals real etcd 3.5.1's for the same history: before any compaction
(compact_revision -1), at past revisions, and after a compaction. Maintenance.Hash is
etcd's hash of the whole backend."""
import json
import os
import subprocess

from tests import etcd351, servers


def ctl(srv, *args):
    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "--command-timeout=20s",
                        *args], capture_output=True, text=True, timeout=60,
                       env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")})
    return p.returncode, p.stdout, p.stderr


def hashkv(srv, rev=0):
    rc, out, err = ctl(srv, "endpoint", "hashkv", "--rev", str(rev), "-w", "json")
    if rc:
        return ("error", err.strip().splitlines()[-1].split("error: ")[-1])
    h = json.loads(out)[0]["HashKV"]
    return h["hash"], h.get("compact_revision", 0), h["header"]["revision"]


def test_hashkv_equals_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    et = None
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD)
        script = [("put", f"k{i % 7}", f"v{i}") for i in range(30)]
        script += [("del", "k3"), ("put", "k3", "again"), ("del", "k1", "k5"),
                   ("txn",)]
        for cmd in script:
            if cmd == ("txn",):
                inp = 'value("k0") = "v28"\n\nput k0 t\nput k9 t\ndel k6\n\n\n'
                for s in (kv, et):
                    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", s.endpoint, "txn"],
                                       input=inp, capture_output=True, text=True, timeout=30,
                                       env={"ETCDCTL_API": "3"})
                    assert p.returncode == 0, p.stderr
                continue
            for s in (kv, et):
                assert ctl(s, *cmd)[0] == 0
        ours, theirs = hashkv(kv), hashkv(et)
        assert ours == theirs and ours[1] == -1
        for rev in (1, 5, 17, 30, 33):
            assert hashkv(kv, rev) == hashkv(et, rev), rev
        for s in (kv, et):
            assert ctl(s, "compact", "20")[0] == 0
        for rev in (0, 20, 21, 33, 10, 99):    # 10: compacted, 99: future
            assert hashkv(kv, rev) == hashkv(et, rev), rev
        for s in (kv, et):
            assert ctl(s, "put", "k0", "after")[0] == 0
            assert ctl(s, "compact", "34")[0] == 0
        assert hashkv(kv) == hashkv(et)
    finally:
        kv.stop()
        if et:
            et.stop()


def _file_hash(snap: str) -> int:
    """etcd's backend Hash computed over a snapshot file: CRC-32C over each bucket's
    name, keys and values, without meta's consistent_index and term."""
    from kvcore.bbolt import Reader
    from kvcore.storage.codec import walcodec
    crc = walcodec.crc32c
    h = 0
    with Reader(snap) as r:
        for name in r.buckets():
            h = crc(name, h)
            for k, v in r.bucket(name):
                if name == b"meta" and k in (b"consistent_index", b"term"):
                    continue
                h = crc(v, crc(k, h))
    return h


def test_hash_is_etcds_backend_hash(tmp_path):
    """Maintenance.Hash: the formula checked on etcd 3.5.1 (its Hash equals the formula
    over its own snapshot), then kvcore's Hash equals it over kvcore's snapshot."""
    import grpc
    from kvcore.api import rpc_pb2, rpc_pb2_grpc
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    et = None
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD)
        for s in (kv, et):
            for i in range(20):
                assert ctl(s, "put", f"k{i}", f"v{i}")[0] == 0
            assert ctl(s, "del", "k4")[0] == 0
            assert ctl(s, "compact", "10")[0] == 0
        hashes = []
        for s in (et, kv):
            with grpc.insecure_channel(s.endpoint) as ch:
                h = rpc_pb2_grpc.MaintenanceStub(ch).Hash(rpc_pb2.HashRequest(), timeout=20).hash
            snap = str(tmp_path / f"{s.kind}.snap")
            assert ctl(s, "snapshot", "save", snap)[0] == 0
            assert h == _file_hash(snap), s.kind
            hashes.append(h)
        assert hashes[0] != hashes[1]     # members and cluster IDs differ
    finally:
        kv.stop()
        if et:
            et.stop()
