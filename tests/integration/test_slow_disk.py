"""A slow disk (the wal-fsync failpoint: every WAL fdatasync takes 1.1 s more, spent
on the writer thread as a slow device would): the member stays correct -- every
write is acknowledged, in order, durable across kill -9 -- and says so where etcd
does: etcd_disk_wal_fsync_duration_seconds counts the slow fsyncs and the log has
etcd's "slow fdatasync" warning (over its 1 s warnSyncDuration)."""
from __future__ import annotations

import json
import re
import threading
import urllib.request

import grpc

from kvcore import failpoints
from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

DELAY_MS = 1100
WRITERS, PUTS = 4, 3     # concurrent clients, sequential puts each


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_slow_fsync_keeps_the_member_correct_and_shows_in_metrics_and_log(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2,
                               env_extra={failpoints.ENV: f"wal-fsync=sleep({DELAY_MS})"})
    try:
        acked, errors = {}, []

        def writer(w: int) -> None:
            with grpc.insecure_channel(srv.endpoint) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                for i in range(PUTS):
                    key = f"slow/{w}/{i}".encode()
                    try:
                        acked[key] = kv.Put(rpc_pb2.PutRequest(key=key, value=key),
                                            timeout=60).header.revision
                    except grpc.RpcError as e:
                        errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and len(acked) == WRITERS * PUTS
        # Correct: distinct revisions, each client's puts in its order.
        assert len(set(acked.values())) == len(acked)
        for w in range(WRITERS):
            revs = [acked[f"slow/{w}/{i}".encode()] for i in range(PUTS)]
            assert revs == sorted(revs)

        with urllib.request.urlopen(f"http://{srv.endpoint}/metrics", timeout=30) as r:
            text = r.read().decode()
        h = "etcd_disk_wal_fsync_duration_seconds"
        total = _metric(text, f"{h}_count")
        fast = _metric(text, f'{h}_bucket{{le="1.024"}}')
        # Every write needed a WAL fsync: all of the puts' ones took over 1.024 s.
        assert total - fast >= 1 and _metric(text, f"{h}_sum") >= (total - fast) * DELAY_MS / 1000
        with urllib.request.urlopen(f"http://{srv.endpoint}/health", timeout=30) as r:
            assert json.loads(r.read())["health"] == "true"   # as etcd: slow, not failed
        log = srv.log()
        slow = [json.loads(line) for line in log.splitlines()
                if line.startswith("{") and '"slow fdatasync"' in line]
        assert slow and slow[0]["level"] == "warn" and slow[0]["expected-duration"] == "1s"
        assert float(slow[0]["took"].rstrip("s")) >= DELAY_MS / 1000

        # Durable: kill -9, restart on a normal disk, every acknowledged write there.
        srv.kill9()
        srv.proc.wait(30)
        srv.env = {k: v for k, v in srv.env.items() if k != failpoints.ENV}
        srv = srv.restart()
        with grpc.insecure_channel(srv.endpoint) as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(
                rpc_pb2.RangeRequest(key=b"slow/", range_end=b"slow0"), timeout=30)
        assert {kv.key: kv.mod_revision for kv in r.kvs} == acked
    finally:
        srv.stop()
