"""The Raft log kept in memory is bounded in bytes as well as in entries: a run of
large values triggers snapshots and compaction by the data applied, so the core's
memory stops growing with it (with etcd's count alone, 100,000 entries of 1 MiB).
KVCORE_SNAPSHOT_BYTES lowers the bound (and the catch-up kept behind a snapshot, a
quarter of it) so that a test sees it with a few hundred puts."""
from __future__ import annotations

import os

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

MIB = 1 << 20


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_large_values_do_not_grow_the_core_without_bound(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               env_extra={"KVCORE_SNAPSHOT_BYTES": str(16 * MIB)})
    try:
        opts = [("grpc.max_send_message_length", 4 * MIB)]
        value = os.urandom(MIB)
        with grpc.insecure_channel(srv.endpoint, options=opts) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            for i in range(200):          # 200 MiB of entries
                kv.Put(rpc_pb2.PutRequest(key=b"big/%d" % (i % 20), value=value), timeout=30)
            rss = _rss_mib(srv.proc.pid)
        snaps = srv.log().count("snapshot at index")
        assert snaps >= 8, srv.log()[-2000:]
        # Unbounded, the core holds all 200 MiB of entries (~270 MiB resident); bounded,
        # at most 16 MiB applied since a snapshot plus 4 MiB kept behind it.
        assert rss < 180, rss

        # Compacted that far, the member still restarts from its snapshot and WAL
        # with every value.
        srv.restart()
        with grpc.insecure_channel(srv.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            r = kv.Range(rpc_pb2.RangeRequest(key=b"big/", range_end=b"big0", keys_only=True),
                         timeout=30)
            assert r.count == 20 and r.header.revision == 201
            got = kv.Range(rpc_pb2.RangeRequest(key=b"big/19"), timeout=30).kvs[0]
            assert got.value == value and got.mod_revision == 201 and got.version == 10
    finally:
        srv.stop()
