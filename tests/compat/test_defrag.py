"""Defragmentation reclaims space: after most data is deleted and compacted, `etcdctl
defrag` shrinks dbSize by at least the freed share while concurrent writes all
succeed; dbSizeInUse tells the truth before and after; `kvcoreutl defrag` does the
same offline and changes no hash."""
import json
import os
import subprocess
import threading

from tests import etcd351, servers
from tests.snapshots import kvcoreutl


def ctl(srv, *args, timeout=60):
    p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "--command-timeout=30s",
                        *args], capture_output=True, text=True, timeout=timeout,
                       env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")})
    assert p.returncode == 0, (args, p.stderr[-1500:])
    return p.stdout


def status(srv):
    return json.loads(ctl(srv, "endpoint", "status", "-w", "json"))[0]["Status"]


def _fill(srv, n, size):
    """n keys of ``size`` bytes through one etcdctl txn per 100 keys (few processes)."""
    for start in range(0, n, 100):
        ops = "".join(f"put big{i:05d} {'x' * size}\n" for i in range(start, min(n, start + 100)))
        p = subprocess.run([etcd351.ETCDCTL, "--endpoints", srv.endpoint, "txn"],
                           input="\n" + ops + "\n\n", capture_output=True, text=True,
                           timeout=60, env={"ETCDCTL_API": "3"})
        assert p.returncode == 0, p.stderr


def test_defrag_reclaims_space_with_writes_going_on(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    try:
        _fill(kv, 2000, 4000)                         # ~8 MB of values
        ctl(kv, "del", "big00", "--prefix")           # 90% of the keys: big00000..big01799
        ctl(kv, "del", "big01000", "big01800")
        rev = status(kv)["header"]["revision"]
        ctl(kv, "compact", str(rev))
        full = status(kv)
        assert full["dbSizeInUse"] < 0.35 * full["dbSize"], full   # freed pages not "in use"

        errors = []
        written = []

        def writer():
            for i in range(60):
                try:
                    ctl(kv, "put", f"during{i}", str(i), timeout=60)
                    written.append(i)
                except AssertionError as e:
                    errors.append(e)
        t = threading.Thread(target=writer)
        t.start()
        try:
            for _ in range(3):
                assert "Finished defragmenting" in ctl(kv, "defrag")
        finally:
            t.join(120)
        assert not errors and len(written) == 60
        after = status(kv)
        freed = 1 - full["dbSizeInUse"] / full["dbSize"]
        assert after["dbSize"] <= full["dbSize"] * (1 - freed) * 1.1 + 65536, (full, after)
        assert after["dbSizeInUse"] <= after["dbSize"]
        got = ctl(kv, "get", "during", "--prefix", "--keys-only").split()
        assert sorted(got) == sorted(f"during{i}" for i in range(60))
        assert len(ctl(kv, "get", "big", "--prefix", "--keys-only").split()) == 200
        hash_online = json.loads(ctl(kv, "endpoint", "hashkv", "-w", "json"))[0]["HashKV"]["hash"]
    finally:
        kv.stop()

    data = str(tmp_path / "kv.etcd")
    rc, out, err = kvcoreutl("hashkv", "--data-dir", data)
    assert rc == 0, err
    assert json.loads(out)["hash"] == hash_online
    rc, out, err = kvcoreutl("defrag", "--data-dir", data)
    assert rc == 0 and out.strip() == f"finished defragmenting directory: {data}", err
    assert json.loads(kvcoreutl("hashkv", "--data-dir", data)[1])["hash"] == hash_online
