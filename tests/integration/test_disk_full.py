"""A full disk (a small tmpfs mounted for the test): writes are refused with
NOSPACE before the disk runs out; a write that still cannot be made (the disk
filled from outside) stops the member with one line naming the file, no
traceback; nothing acknowledged is lost once space is back."""
import os
import subprocess

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers


@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "kv.etcd"      # the data dir itself (the log goes beside it)
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(d)], check=True)
    try:
        yield str(d)
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _fill(path):
    """Take every free byte of the filesystem at ``path`` (a filler file)."""
    filler = os.path.join(path, "filler")    # created while there was room
    with open(filler, "r+b") as f:
        for chunk in (1 << 16, 1):
            try:
                while True:
                    os.write(f.fileno(), b"\xff" * chunk)
            except OSError:
                pass
    return filler


def test_full_disk_raises_nospace_then_fail_stops_cleanly(small_disk):
    open(os.path.join(small_disk, "filler"), "wb").close()
    srv = servers.start_kvcore(small_disk, workers=1)
    acked = {}
    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            refused = None
            for i in range(2000):
                key = f"big/{i:04d}".encode()
                try:
                    acked[key] = kv.Put(rpc_pb2.PutRequest(key=key, value=b"v" * 60000),
                                        timeout=10).header.revision
                except grpc.RpcError as e:
                    refused = e
                    break
        assert refused is not None, "the disk never filled"
        assert refused.details() == "etcdserver: mvcc: database space exceeded", \
            refused.details()
        assert srv.proc.poll() is None, "the member stopped instead of refusing"
        assert "disk nearly full" in srv.log()
        rc, out, _ = srv.etcdctl("alarm", "list")
        assert rc == 0 and "alarm:NOSPACE" in out
        # Now the disk fills from outside. Alarm requests and deletes are not refused
        # for space (as in etcd): the member must write them, and once the WAL needs
        # a new page it cannot, and stops. A delete of a 1 MiB key is a 1 MiB WAL
        # entry, so the zeros written ahead of the log (kvcore/storage/walfill.py, a
        # few MiB) run out after a few of them.
        filler = _fill(small_disk)
        big_key = b"gone/" + b"k" * (1 << 20)
        with grpc.insecure_channel(srv.endpoint, options=[
                ("grpc.max_send_message_length", 4 << 20)]) as ch:
            m = rpc_pb2_grpc.MaintenanceStub(ch)
            kv = rpc_pb2_grpc.KVStub(ch)
            for _ in range(3000):
                if srv.proc.poll() is not None:
                    break
                try:
                    m.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE,
                                                 memberID=0, alarm=rpc_pb2.NOSPACE),
                            timeout=5)
                    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=big_key), timeout=5)
                except grpc.RpcError:
                    pass
        srv.proc.wait(30)
        log = srv.log()
        assert "stopping the member: " in log and "No space left on device" in log
        assert ("WAL write to " + small_disk in log
                or "backend write to " in log), log[-2000:]
        assert "Traceback" not in log
        os.unlink(filler)
        srv = srv.restart()
        with grpc.insecure_channel(srv.endpoint) as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(
                rpc_pb2.RangeRequest(key=b"big/", range_end=b"big0", keys_only=True),
                timeout=10)
        have = {x.key: x.mod_revision for x in r.kvs}
        lost = [k for k in acked if have.get(k) != acked[k]]
        assert not lost, f"{len(lost)} acknowledged writes lost"
    finally:
        srv.stop()
