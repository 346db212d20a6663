"""--experimental-initial-corrupt-check: a member whose data differs from its peers'
at the same revision refuses to start, with etcd's message; healthy members pass."""
from __future__ import annotations

import json
import os
import subprocess
import time

import lmdb

from kvcore.api import kv_pb2
from tests import servers


def _corrupt_one_value(data_dir: str) -> None:
    """Flip the value of one stored revision of key 'k' in a stopped member's backend."""
    env = lmdb.open(os.path.join(data_dir, "member", "snap", "db"), subdir=True, max_dbs=16)
    db = env.open_db(b"key")
    with env.begin(write=True, db=db) as txn:
        for rev_key, raw in txn.cursor():
            kv = kv_pb2.KeyValue.FromString(raw)
            if kv.key == b"k":
                kv.value = b"tampered"
                txn.put(rev_key, kv.SerializeToString())
                break
        else:
            raise AssertionError("no revision of 'k' found")
    env.close()


def test_initial_corrupt_check_refuses_a_member_with_different_data(tmp_path):
    flag = ("--experimental-initial-corrupt-check",)
    members = servers.start_cluster(str(tmp_path), 3, extra=flag)
    try:
        for i in range(5):
            assert members[0].etcdctl("put", "k", f"v{i}")[0] == 0
        victim = members[2]
        victim.stop()
        # a healthy restart passes the check against the two running peers
        ok = subprocess.Popen(victim.argv, stdout=open(victim.log_path, "a"),
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
        victim.proc = ok
        servers.wait_port(victim.port, ok)
        deadline = time.monotonic() + 30
        while "initial corruption checking passed" not in victim.log() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "initial corruption checking passed; no corruption" in victim.log()
        victim.stop()
        _corrupt_one_value(victim.data_dir)
        p = subprocess.run(victim.argv, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 1
        events = [json.loads(l) for l in p.stderr.splitlines() if l.startswith("{")]
        assert any(e["msg"] == "found different hash values from remote peer"
                   for e in events)
        failed = [e for e in events if e["msg"] == "failed to start kvcore"]
        assert failed and failed[0]["error"].endswith("found data inconsistency with peers")
    finally:
        for m in members:
            m.stop()


def test_periodic_check_raises_the_corrupt_alarm_and_writes_are_refused(tmp_path):
    members = servers.start_cluster(str(tmp_path), 3,
                                    extra=("--experimental-corrupt-check-time=1s",))
    try:
        for i in range(5):
            assert members[0].etcdctl("put", "k", f"v{i}")[0] == 0
        leader = servers.leader_of(members)
        victim = next(m for m in members if m is not leader)
        victim.stop()
        _corrupt_one_value(victim.data_dir)
        victim.proc = subprocess.Popen(victim.argv, stdout=open(victim.log_path, "a"),
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        servers.wait_port(victim.port, victim.proc)
        eps = servers.endpoints(members)
        deadline = time.monotonic() + 60
        out = ""
        while "alarm:CORRUPT" not in out and time.monotonic() < deadline:
            out = servers.etcdctl(eps, "alarm", "list")[1]
            time.sleep(0.5)
        assert "alarm:CORRUPT" in out
        rc, _, err = servers.etcdctl(eps, "put", "k", "after")
        assert rc != 0 and "etcdserver: corrupt cluster" in err
        # reads still work, as in etcd
        rc, out, _ = leader.etcdctl("get", "k", "--print-value-only")
        assert rc == 0 and out.strip() == "v4"
    finally:
        for m in members:
            m.stop()
