"""etcdctl reads a 1.4 MB value from kvcore as from etcd 3.5.1. etcdctl's gRPC client
sends BDP pings while a large answer streams in; grpc-go forgives ping strikes on every
DATA frame it writes, and the native engine must too (it had answered GOAWAY
too_many_pings once the answer spanned more than a few frames)."""
from __future__ import annotations

import subprocess

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import etcd351, servers

VALUE = b"0123456789abcdef" * 87_500      # 1.4 MB, under the 1.5 MiB request limit


def _read_back(m) -> list:
    with grpc.insecure_channel(f"127.0.0.1:{m.port}",
                               options=[("grpc.max_send_message_length", 2 << 20)]) as ch:
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"big", value=VALUE), timeout=30)
    out = []
    for _ in range(3):                    # a fresh etcdctl connection each time
        p = subprocess.run([etcd351.ETCDCTL, f"--endpoints=127.0.0.1:{m.port}", "get", "big",
                            "--print-value-only"], capture_output=True, timeout=60)
        out.append((p.returncode, p.stdout == VALUE + b"\n", p.stderr.decode()[-300:]))
    return out


def test_etcdctl_gets_a_large_value_as_from_etcd(tmp_path):
    got = {}
    for kind in ("kvcore", "etcd"):
        m = (servers.start_kvcore(str(tmp_path / "kv.etcd")) if kind == "kvcore"
             else servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD))
        try:
            got[kind] = _read_back(m)
        finally:
            m.stop()
    assert got["etcd"] == [(0, True, "")] * 3
    assert got["kvcore"] == got["etcd"]
