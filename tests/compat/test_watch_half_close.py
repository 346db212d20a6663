"""A Watch whose client half-closes its send side right after the create request
(grpcurl-style clients do): etcd keeps sending events, and so must kvcore."""
from __future__ import annotations

import os

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD351", "/opt/etcd351/bin/etcd")


def _events_after_half_close(port: int) -> list:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"hc"))
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([create]), timeout=20)
        first = next(stream)
        assert first.created
        kv = rpc_pb2_grpc.KVStub(ch)
        for v in (b"1", b"2"):
            kv.Put(rpc_pb2.PutRequest(key=b"hc", value=v), timeout=10)
        got = []
        for resp in stream:
            got.extend((e.type, e.kv.value) for e in resp.events)
            if len(got) >= 2:
                break
        stream.cancel()
        return got


def test_watch_keeps_streaming_after_half_close(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351)
        try:
            want = _events_after_half_close(et.port)
            assert want == [(0, b"1"), (0, b"2")]
            assert _events_after_half_close(kv.port) == want
        finally:
            et.stop()
    finally:
        kv.stop()
