"""Keys, user names and role names longer than an LMDB key (511 bytes), as etcd 3.5.1
takes them: the same answers from real etcdctl on both servers, kept across a
restart, and carried by snapshots both ways between kvcore and a real etcd.

Such a key once stopped the member for good (`etcdctl check datascale` writes
them): the apply failed and the WAL replayed the same put at every start.
"""
import json
import os
import subprocess

from tests import etcd351, servers
from tests.snapshots import kvcoreutl

SHARED = "s" * 511                     # a key of exactly LMDB's limit: stays short
KEYS = {SHARED: "at-limit", SHARED + "a": "one-more", SHARED + "b" * 400: "bucket-mate",
        "k" * 600: "six-hundred", "z" * 5000: "five-thousand", "m": "short"}
USER = "u" * 600
ROLE = "r" * 700


def ctl(srv, *args):
    env = {"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")}
    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "--command-timeout=20s",
                        *args], capture_output=True, text=True, timeout=60, env=env)
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith('{"level"'))
    return p.returncode, p.stdout, err


def kvs(srv, *args):
    rc, out, err = ctl(srv, "get", *args, "-w", "json")
    assert rc == 0, err
    r = json.loads(out)
    return r.get("count", 0), r.get("more", False), [
        (x["key"], x.get("value"), x["create_revision"], x["mod_revision"], x["version"])
        for x in r.get("kvs", [])]


def script(srv):
    """The same steps on either server; what etcdctl printed, step by step."""
    seen = []
    for k, v in KEYS.items():
        rc, out, err = ctl(srv, "put", k, v)
        seen.append(("put", rc, out, err))
    for k in KEYS:
        seen.append(("get", kvs(srv, k)))
    seen.append(("all", kvs(srv, "", "--from-key")))
    seen.append(("prefix", kvs(srv, SHARED, "--prefix")))
    seen.append(("limit", kvs(srv, SHARED, "--prefix", "--limit", "2")))
    seen.append(("range", kvs(srv, "k", "zz")))
    seen.append(("del", ctl(srv, "del", SHARED + "a")))
    seen.append(("after-del", kvs(srv, "", "--from-key", "--keys-only")))
    for step in (("user", "add", f"{USER}:pw"), ("role", "add", ROLE),
                 ("role", "grant-permission", ROLE, "readwrite", "k" * 600),
                 ("user", "grant-role", USER, ROLE), ("user", "get", USER),
                 ("role", "get", ROLE), ("user", "list"), ("role", "list")):
        seen.append((step[:2], ctl(srv, *step)))
    return seen


def test_long_keys_and_names_match_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    et = None
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD)
        got, want = script(kv), script(et)
        for g, w in zip(got, want):
            assert g == w, g[0]
        assert len(got) == len(want)

        # Kept across a restart (the core reloads users and roles, the workers'
        # index of long keys is on disk).
        before = (kvs(kv, "", "--from-key"), ctl(kv, "user", "get", USER),
                  ctl(kv, "role", "get", ROLE))
        kv = kv.restart()
        assert (kvs(kv, "", "--from-key"), ctl(kv, "user", "get", USER),
                ctl(kv, "role", "get", ROLE)) == before

        # A kvcore snapshot restored by etcd's own etcdutl serves the same to etcd.
        snap = str(tmp_path / "kv.db")
        rc, _, err = ctl(kv, "snapshot", "save", snap)
        assert rc == 0, err
        restored = str(tmp_path / "restored.etcd")
        p = subprocess.run([etcd351.ETCDUTL, "snapshot", "restore", snap, "--data-dir",
                            restored], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        et.stop()
        et = servers.start_etcd(restored, binary=etcd351.ETCD)
        assert kvs(et, "", "--from-key")[2] == before[0][2]
        assert ctl(et, "user", "get", USER) == before[1]
        assert ctl(et, "role", "get", ROLE) == before[2]

        # And the other way: etcd's snapshot restored by kvcoreutl, served by kvcore.
        rc, _, err = ctl(et, "snapshot", "save", str(tmp_path / "etcd.db"))
        assert rc == 0, err
        kv.stop()
        rc, _, err = kvcoreutl("snapshot", "restore", str(tmp_path / "etcd.db"),
                               "--data-dir", str(tmp_path / "back.etcd"))
        assert rc == 0, err
        kv = servers.start_kvcore(str(tmp_path / "back.etcd"), workers=2)
        assert kvs(kv, "", "--from-key")[2] == before[0][2]
        assert ctl(kv, "user", "get", USER) == before[1]
        assert ctl(kv, "role", "get", ROLE) == before[2]
    finally:
        kv.stop()
        if et is not None:
            et.stop()
