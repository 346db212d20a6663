"""Shared by the backup tests: populate a member through the real etcdctl 3.5.1 with
history, deletions, a compaction, leases and auth, and the view compared between
kvcore and etcd (etcdctl's outputs)."""
import json
import os
import subprocess
import sys

from tests import etcd351

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


def populate(kv):
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


def view(srv):
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


def kvcoreutl(*args):
    """kvcoreutl as the console script runs it (python -m kvcore.utl)."""
    p = subprocess.run([sys.executable, "-m", "kvcore.utl", *args], capture_output=True,
                       text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr
