"""etcd's runbooks on kvcore unchanged: a stopped one-member etcd 3.5.1's data dir, and
the data dir `etcdutl snapshot restore` makes, are taken over when kvcore starts on
them (kvcore/storage/takeover.py). kvcore then serves what etcd served; etcd's files
are kept byte for byte in member.etcd; a takeover interrupted at any step is finished
or redone at the next start."""
import os
import subprocess

import pytest

from kvcore.storage import takeover
from tests import etcd351, servers
from tests.compat import test_etcd_data_dir as refused

_digest = refused._digest       # every file's sha256 under a tree


def _view(srv) -> list:
    out = []
    for args in (("get", "--prefix", ""), ("get", "k1", "--rev", "2"), ("user", "list")):
        rc, text, err = srv.etcdctl(*args)
        out.append((rc, text, err))
    return out


def _etcd_with_data(data_dir: str) -> list:
    et = servers.start_etcd(data_dir, binary=etcd351.ETCD)
    try:
        for i in range(5):
            assert et.etcdctl("put", f"k{i}", f"v{i}")[0] == 0
        assert et.etcdctl("put", "k1", "again")[0] == 0
        assert et.etcdctl("user", "add", "alice:pw")[0] == 0
        return _view(et)
    finally:
        et.stop()


def test_a_stopped_one_member_etcds_data_dir_is_taken_over(tmp_path):
    d = str(tmp_path / "etcd.etcd")
    served = _etcd_with_data(d)
    before = _digest(os.path.join(d, "member"))
    kv = servers.start_kvcore(d)
    try:
        assert _view(kv) == served
        kv.stop()
        assert _digest(os.path.join(d, takeover.KEPT)) == before   # etcd's files, whole
        assert not os.path.exists(os.path.join(d, takeover.STAGING))
        kv.restart()                                                 # a plain restart
        assert _view(kv) == served
        assert kv.etcdctl("put", "after", "1")[0] == 0
    finally:
        kv.stop()


def test_etcdutls_restore_then_start_as_etcds_runbook(tmp_path):
    src = str(tmp_path / "src.etcd")
    served = _etcd_with_data(src)
    et = servers.start_etcd(src, binary=etcd351.ETCD)
    snap = str(tmp_path / "snap.db")
    try:
        assert et.etcdctl("snapshot", "save", snap)[0] == 0
    finally:
        et.stop()
    got = {}
    for kind in ("etcd", "kvcore"):
        port, peer = servers.free_port(), servers.free_port()
        d = str(tmp_path / f"restored-{kind}")
        url = f"http://127.0.0.1:{peer}"
        r = subprocess.run([etcd351.ETCDUTL, "snapshot", "restore", snap, "--data-dir", d,
                            "--name", "default", "--initial-cluster", f"default={url}",
                            "--initial-advertise-peer-urls", url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        srv = (servers.start_etcd(d, binary=etcd351.ETCD) if kind == "etcd"
               else servers.start_kvcore(d))
        try:
            got[kind] = _view(srv)
        finally:
            srv.stop()
    assert got["etcd"] == served
    assert got["kvcore"] == got["etcd"]


@pytest.mark.parametrize("crash_at", ["staging", "between_renames"])
def test_an_interrupted_takeover_is_finished_or_redone(tmp_path, monkeypatch, crash_at):
    d = str(tmp_path / "etcd.etcd")
    served = _etcd_with_data(d)
    before = _digest(os.path.join(d, "member"))
    real_rename = os.rename
    calls = []

    def crashing_rename(a, b):
        calls.append((a, b))
        # the staging dir's own build-and-rename, or etcd's member moved aside
        if (crash_at == "staging" and b.endswith(takeover.STAGING)) or \
                (crash_at == "between_renames" and a.startswith(os.path.join(
                    d, takeover.STAGING))):
            raise OSError("simulated crash")
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", crashing_rename)
    with pytest.raises(OSError):
        takeover.take_over(d, "default", "default=http://127.0.0.1:1", "etcd-cluster",
                           ["http://127.0.0.1:1"])
    monkeypatch.setattr(os, "rename", real_rename)
    if crash_at == "between_renames":
        assert not os.path.exists(os.path.join(d, "member"))   # the window resume closes
    kv = servers.start_kvcore(d)
    try:
        assert _view(kv) == served
    finally:
        kv.stop()
    assert _digest(os.path.join(d, takeover.KEPT)) == before
    assert not os.path.exists(os.path.join(d, takeover.STAGING))
