"""A unary gRPC call whose client sends no message, or a cut-off one, then ends
its stream: etcd answers at once (Unknown "EOF" / "unexpected EOF"); kvcore must
answer too, on either engine (grpcio alone would wait forever)."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD351", "/opt/etcd351/bin/etcd")


def _status(port: int, body: bytes, tmp_path) -> tuple:
    f = tmp_path / "body"
    f.write_bytes(body)
    out = subprocess.run(
        ["nghttp", "-v", "-t", "10", "-d", str(f), "-H", "content-type: application/grpc",
         "-H", "te: trailers", f"http://127.0.0.1:{port}/etcdserverpb.KV/Range"],
        capture_output=True, text=True, timeout=20).stdout
    code = re.search(r"grpc-status: (\d+)", out)
    msg = re.search(r"grpc-message: (.*)", out)
    return (code and code.group(1), msg and msg.group(1).strip())


# "native": the native engine's own answer to a cut-off message (pure-Python mode has
# no native engine; "grpcio" is what it serves with)
@pytest.mark.parametrize("engine", [pytest.param("native", marks=pytest.mark.native_engine),
                                    "grpcio"])
def test_unary_call_without_a_whole_message_is_answered(engine, tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                              extra=("--grpc-engine", engine))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351)
        try:
            assert _status(et.port, b"", tmp_path) == ("2", "EOF")
            assert _status(kv.port, b"", tmp_path) == ("2", "EOF")
            want = _status(et.port, b"\0\0\0", tmp_path)
            assert want == ("2", "unexpected EOF")
            got = _status(kv.port, b"\0\0\0", tmp_path)
            # grpcio's reader drops a cut-off message silently: its answer says EOF.
            assert got == (want if engine == "native" else ("2", "EOF"))
        finally:
            et.stop()
    finally:
        kv.stop()
