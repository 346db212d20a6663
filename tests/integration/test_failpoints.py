"""Crash points in the write path (kvcore/failpoints.py): each fires where it says,
and the member restarted without it has every acknowledged write."""
import json
import subprocess
import time

import grpc
import pytest

from kvcore import failpoints
from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers


def test_spec_parsing():
    pts = failpoints.parse("wal-before-write=crash, apply-after=crash@3,wal-fsync=sleep(25)")
    assert (pts["wal-before-write"].crash_at, pts["apply-after"].crash_at) == (1, 3)
    assert pts["wal-fsync"].sleep_s == 0.025
    for bad in ("nowhere=crash", "apply-after=explode", "apply-after=crash@x"):
        with pytest.raises(ValueError):
            failpoints.parse(bad)


def _put_until_dead(srv, limit=400, seconds=60):
    """Sequential puts until the member dies: -> {key: acknowledged revision}."""
    acked = {}
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(srv.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(limit):
            if srv.proc.poll() is not None or time.monotonic() > deadline:
                break
            key = f"fp/{i:04d}".encode()
            try:
                acked[key] = kv.Put(rpc_pb2.PutRequest(key=key, value=key), timeout=5
                                    ).header.revision
            except grpc.RpcError:
                pass
    return acked


def _restart_clean(srv):
    srv.proc.wait(30)
    srv.env = {k: v for k, v in srv.env.items() if k != failpoints.ENV}
    return srv.restart()


def _check_all_there(srv, acked):
    with grpc.insecure_channel(srv.endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(
            rpc_pb2.RangeRequest(key=b"fp/", range_end=b"fp0"), timeout=10)
    have = {kv.key: kv.mod_revision for kv in r.kvs}
    lost = [k for k in acked if have.get(k) != acked[k]]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"


@pytest.mark.parametrize("point", ["wal-before-write", "wal-after-fsync", "apply-before",
                                   "apply-after"])
def test_crash_point_in_the_write_path_loses_nothing_acknowledged(tmp_path, point):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               env_extra={failpoints.ENV: f"{point}=crash@25"})
    try:
        acked = _put_until_dead(srv)
        try:   # the puts after the crash can all fail before the process is gone
            srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        assert srv.proc.poll() is not None, f"{point} never fired"
        assert f"failpoint {point} fired" in srv.log()
        assert acked, "no write acknowledged before the crash"
        srv = _restart_clean(srv)
        _check_all_there(srv, acked)
        assert srv.etcdctl("put", "after", "1")[0] == 0
    finally:
        srv.stop()


# The compaction is a committed Raft entry when the crash hits its apply: replayed
# at restart, it is done (as in etcd), so compacting again at 5 is refused.
@pytest.mark.parametrize("point,command,after", [
    ("compact-before", ("compact", "5"), "required revision has been compacted"),
    ("defrag-before", ("defrag",), "Finished defragmenting")])
def test_crash_during_compaction_and_defrag_loses_nothing(tmp_path, point, command, after):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               env_extra={failpoints.ENV: f"{point}=crash"})
    try:
        acked = _put_until_dead(srv, limit=20)
        assert len(acked) == 20 and srv.proc.poll() is None
        srv.etcdctl(*command, timeout=15)
        srv.proc.wait(30)
        assert f"failpoint {point} fired" in srv.log()
        srv = _restart_clean(srv)
        _check_all_there(srv, acked)
        rc, out, err = srv.etcdctl(*command)   # the interrupted operation, now done
        assert after in out + err
    finally:
        srv.stop()


def test_crash_during_snapshot_install_then_catch_up(tmp_path):
    """A follower that was down catches up by snapshot; it crashes about to install
    it, and restarted clean it still ends with the leader's data."""
    members = servers.start_cluster(
        str(tmp_path), 3, extra=("--snapshot-count", "100",
                                 "--experimental-snapshot-catchup-entries", "20"))
    try:
        leader = servers.leader_of(members)
        lagging = next(m for m in members if m is not leader)
        i = members.index(lagging)
        lagging.stop()
        with grpc.insecure_channel(leader.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for n in range(400):
                kv.Put(rpc_pb2.PutRequest(key=f"fp/{n % 50:02d}".encode(),
                                          value=f"v{n}".encode()), timeout=10)
        lagging.env = dict(lagging.env, **{failpoints.ENV: "snapshot-install=crash"})
        try:    # it may die before it reports ready
            members[i] = lagging = lagging.restart()
            lagging.proc.wait(60)
        except RuntimeError:
            pass
        assert "failpoint snapshot-install fired" in lagging.log()
        lagging.env = {k: v for k, v in lagging.env.items() if k != failpoints.ENV}
        servers.wait_port_free(lagging.port)
        members[i] = lagging = servers._launch(
            lagging.kind, lagging.argv, lagging.port, lagging.peer_port, lagging.data_dir,
            lagging.log_path, lagging.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rc, out, _ = lagging.etcdctl("get", "fp/49", "--print-value-only",
                                         "--consistency", "s")
            if rc == 0 and out.strip() == "v399":
                break
            time.sleep(0.3)
        assert out.strip() == "v399"
        assert leader.etcdctl("put", "after", "1")[0] == 0
        deadline = time.monotonic() + 30      # it keeps following
        while time.monotonic() < deadline and lagging.etcdctl(
                "get", "after", "--print-value-only", "--consistency", "s")[1].strip() != "1":
            time.sleep(0.2)
        assert "finished installing snapshot at index" in lagging.log()
        rc, out, err = servers.etcdctl(servers.endpoints(members), "endpoint", "hashkv",
                                       "-w", "json")
        assert rc == 0, err
        assert len({h["HashKV"]["hash"] for h in json.loads(out)}) == 1, out
    finally:
        for m in members:
            m.stop()
