"""Backups with etcd's own tools: kvcore's Maintenance.Snapshot is an etcd 3.5 bbolt
database (real `bbolt check` accepts it), `etcdutl snapshot status` reads it, and a real
etcd 3.5.1 restored from it by `etcdutl snapshot restore` serves what kvcore served:
keys with their history, leases, users and roles, and the same HashKV."""
import json
import os
import subprocess

import pytest

from kvcore.bbolt import Reader
from tests import bbolt_tool, etcd351, servers

ROOT = ("--user", "root:rootpw")


def ctl(srv, *args, auth=True):
    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "--command-timeout=20s",
                        *(ROOT if auth else ()), *args],
                       capture_output=True, text=True, timeout=60,
                       env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")})
    assert p.returncode == 0, (args, p.stderr[-2000:])
    return p.stdout


def utl(*args):
    p = subprocess.run([etcd351.ETCDUTL, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def _populate(kv):
    """History, deletions, a compaction, leases, and auth users and roles (auth on)."""
    for i in range(40):
        ctl(kv, "put", f"k{i:02d}", f"v{i}", auth=False)
    for i in range(0, 40, 3):
        ctl(kv, "put", f"k{i:02d}", f"w{i}", auth=False)
    ctl(kv, "del", "k05", auth=False)
    ctl(kv, "del", "k1", "--prefix", auth=False)
    compact_at = int(json.loads(ctl(kv, "get", "x", "-w", "json", auth=False))["header"]["revision"])
    ctl(kv, "put", "k00", "after-compact-point", auth=False)
    ctl(kv, "compact", str(compact_at), auth=False)
    leases = []
    for ttl in (300, 600):
        out = ctl(kv, "lease", "grant", str(ttl), auth=False)
        leases.append(out.split()[1])
    ctl(kv, "put", "leased", "x", "--lease", leases[0], auth=False)
    ctl(kv, "put", "k99", "last", auth=False)
    for cmd in (("user", "add", "root:rootpw"), ("role", "add", "root"),
                ("user", "grant-role", "root", "root"), ("user", "add", "alice:apw"),
                ("role", "add", "reader"),
                ("role", "grant-permission", "reader", "read", "k", "--prefix"),
                ("role", "grant-permission", "reader", "readwrite", "leased"),
                ("user", "grant-role", "alice", "reader"), ("auth", "enable")):
        ctl(kv, *cmd, auth=False)
    return compact_at


def _view(srv):
    """What the comparison covers, from etcdctl's output."""
    got = json.loads(ctl(srv, "get", "", "--from-key", "-w", "json"))
    kvs = [(kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"],
            kv.get("lease", 0)) for kv in got["kvs"]]
    hashkv = json.loads(ctl(srv, "endpoint", "hashkv", "-w", "json"))[0]["HashKV"]
    return {
        "revision": got["header"]["revision"],
        "kvs": kvs,
        "leases": sorted(ctl(srv, "lease", "list").split()[3:]),
        "users": ctl(srv, "user", "list"),
        "roles": ctl(srv, "role", "list"),
        "role reader": ctl(srv, "role", "get", "reader"),
        "user alice": ctl(srv, "user", "get", "alice"),
        "alice reads": ctl(srv, "--user", "alice:apw", "get", "k02", "--print-value-only"),
        "hashkv": (hashkv["hash"], hashkv.get("compact_revision")),
    }


def test_kvcore_snapshot_restores_into_real_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    try:
        compact_at = _populate(kv)
        before = _view(kv)
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
        after = _view(et)
    finally:
        et.stop()
    assert after == before
