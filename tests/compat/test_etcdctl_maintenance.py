"""Maintenance commands through the real etcdctl: snapshot save (the file carries a
SHA-256 trailer, like etcd's, over the backend as an etcd bbolt database), defrag,
alarm list, auth status, and the client-side lock and election recipes."""
import hashlib
import os
import shutil
import subprocess
import time

import pytest

from kvcore.api import kv_pb2
from kvcore.bbolt import Reader
from tests import servers


@pytest.fixture(scope="module")
def member(tmp_path_factory):
    srv = servers.start_kvcore(str(tmp_path_factory.mktemp("maint") / "kv.etcd"), workers=1)
    yield srv
    srv.stop()


def test_snapshot_save(member, tmp_path):
    for i in range(30):
        assert member.etcdctl("put", f"k{i}", f"v{i}")[0] == 0
    path = tmp_path / "snap.db"
    rc, out, err = member.etcdctl("snapshot", "save", str(path))
    assert rc == 0, err
    assert f"Snapshot saved at {path}" in out + err
    data = path.read_bytes()
    body, trailer = data[:-32], data[-32:]
    assert hashlib.sha256(body).digest() == trailer
    db = tmp_path / "body.db"
    db.write_bytes(body)
    with Reader(str(db)) as r:
        keys = {kv_pb2.KeyValue.FromString(v).key for _, v in r.bucket(b"key")}
    assert {f"k{i}".encode() for i in range(30)} <= keys


def test_defrag_alarm_auth_status(member):
    rc, out, err = member.etcdctl("defrag")
    assert rc == 0 and "Finished defragmenting" in out + err
    rc, out, _ = member.etcdctl("alarm", "list")
    assert rc == 0 and out.strip() == ""
    import grpc
    from kvcore.api import rpc_pb2, rpc_pb2_grpc
    with grpc.insecure_channel(member.endpoint) as ch:
        auth = rpc_pb2_grpc.AuthStub(ch)
        assert auth.AuthStatus(rpc_pb2.AuthStatusRequest(), timeout=10).enabled is False
        with pytest.raises(grpc.RpcError) as e:
            auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="x"), timeout=10)
        assert e.value.details() == "etcdserver: authentication is not enabled"


def test_lock_and_election_recipes(member):
    # etcdctl lock / elect are client-side recipes over Txn, Lease and Watch.
    rc, out, err = member.etcdctl("lock", "mylock", "echo", "inside")
    assert rc == 0 and "inside" in out, err
    env = {"ETCDCTL_API": "3"}
    p = subprocess.Popen([servers.ETCDCTL, "--endpoints", member.endpoint, "elect", "e1", "p1"],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        # The campaign's key holds the proposal, under the election's prefix.
        deadline = time.monotonic() + 15
        values = ""
        while time.monotonic() < deadline and "p1" not in values:
            values = member.etcdctl("get", "e1/", "--prefix", "--print-value-only")[1]
            time.sleep(0.2)
        assert values.split() == ["p1"]
    finally:
        p.terminate()
        p.wait(10)
