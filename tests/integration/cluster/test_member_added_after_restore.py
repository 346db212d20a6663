"""A member added to a cluster restored from a snapshot gets the restored data.

A restored data dir (`kvcoreutl snapshot restore`, or etcd's data dir that
`etcdutl snapshot restore` made, taken over at start) holds data that no Raft log entry
carries. A member added later used to replay the log alone and serve an empty store:
its linearizable reads answered nothing. The restored member now takes a snapshot once
its bootstrap entries are applied, so the joiner is sent the data, as etcd's restore
(whose WAL starts with a snapshot) makes it."""
import time

import pytest

from tests import servers
from tests.snapshots import ctl, kvcoreutl, populate, utl, view

# The cluster grows from one voter to two while the joiner starts, so its first calls
# may meet a leader change; etcdctl cannot retry the Authenticate that --user sends
# first (a mutable call), and etcd answers it "leader changed" too.
TRANSIENT = ("etcdserver: leader changed", "etcdserver: no leader")


def _view_once_settled(srv):
    for _ in range(20):
        try:
            return view(srv)
        except AssertionError as e:
            if not any(t in str(e) for t in TRANSIENT):
                raise
            time.sleep(0.5)
    return view(srv)


def _restored(tmp_path, how: str):
    src = servers.start_kvcore(str(tmp_path / "src.etcd"))
    try:
        populate(src)
        snap = str(tmp_path / "snap.db")
        ctl(src, "snapshot", "save", snap)
        before = view(src)
    finally:
        src.stop()
    port, peer = servers.free_port(), servers.free_port()
    url = f"http://127.0.0.1:{peer}"
    data = str(tmp_path / "restored.etcd")
    flags = ("--name", "default", "--initial-cluster", f"default={url}",
             "--initial-advertise-peer-urls", url, "--data-dir", data)
    rc, _, err = (kvcoreutl("snapshot", "restore", snap, *flags) if how == "kvcoreutl"
                  else utl("snapshot", "restore", snap, *flags))
    assert rc == 0, err
    return before, servers.start_kvcore(data, port=port, extra=(
        "--listen-peer-urls", url, "--initial-advertise-peer-urls", url,
        "--initial-cluster", f"default={url}")), peer


@pytest.mark.parametrize("how", ["kvcoreutl", "etcdutl"])
def test_member_added_after_a_restore_serves_the_restored_data(tmp_path, how):
    before, first, _ = _restored(tmp_path, how)
    joiner = None
    try:
        assert view(first) == before
        port, peer = servers.free_port(), servers.free_port()
        rc, out, err = servers.member_change(first, "add", "m2",
                                             f"--peer-urls=http://127.0.0.1:{peer}",
                                             "--user", "root:rootpw")
        assert rc == 0, err
        initial = next(l.split("=", 1)[1].strip('"') for l in out.splitlines()
                       if l.startswith("ETCD_INITIAL_CLUSTER="))
        joiner = servers.start_joining_member(str(tmp_path), "m2", initial, "etcd-cluster",
                                              port, peer)
        got = _view_once_settled(joiner)
        assert got == view(first)
        assert got["kvs"] == before["kvs"] and got["hashkv"] == before["hashkv"]
    finally:
        if joiner is not None:
            joiner.stop()
        first.stop()
