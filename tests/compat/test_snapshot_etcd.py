"""Backups with etcd's own tools: kvcore's Maintenance.Snapshot is an etcd 3.5 bbolt
database (real `bbolt check` accepts it), `etcdutl snapshot status` reads it, and a real
etcd 3.5.1 restored from it by `etcdutl snapshot restore` serves what kvcore served:
keys with their history, leases, users and roles, and the same HashKV."""
import json

from kvcore.bbolt import Reader
from tests import bbolt_tool, etcd351, servers
from tests.snapshots import ctl, populate, utl, view


def test_kvcore_snapshot_restores_into_real_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    try:
        compact_at = populate(kv)
        before = view(kv)
        snap = str(tmp_path / "snap.db")
        ctl(kv, "snapshot", "save", snap)
    finally:
        kv.stop()
    assert before["hashkv"][1] == compact_at and len(before["leases"]) == 2

    # The file: a bbolt database with etcd's buckets (after etcd's sha256 trailer).
    body = str(tmp_path / "body.db")
    with open(snap, "rb") as f, open(body, "wb") as out:
        out.write(f.read()[:-32])
    check = bbolt_tool.run("check", body)
    assert check.stdout.strip() == "OK", check.stdout + check.stderr
    assert bbolt_tool.run("buckets", body).stdout.split() == [
        "alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members",
        "members_removed", "meta"]

    rc, out, err = utl("snapshot", "status", snap, "-w", "json")
    assert rc == 0, err
    status = json.loads(out)
    with Reader(body) as r:
        total = sum(1 for b in r.buckets() for _ in r.bucket(b))
        size = r.size
    assert status["revision"] == before["revision"]
    assert status["totalKey"] == total and status["totalSize"] == size
    from kvcore.utl import snapshot as utl_snapshot
    assert status["hash"] == utl_snapshot.status(snap)["hash"]

    data = str(tmp_path / "restored.etcd")
    rc, out, err = utl("snapshot", "restore", snap, "--data-dir", data)
    assert rc == 0, err
    et = servers.start_etcd(data, binary=etcd351.ETCD)
    try:
        after = view(et)
    finally:
        et.stop()
    assert after == before
