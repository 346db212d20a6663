"""Streaming gateway routes over HTTP/2, as etcd 3.5.1 serves them over TLS (h2 by
ALPN): 200 and one JSON object per message, like HTTP/1.1's chunks. curl is the
client (--http2 --cacert), kvcore on the native engine and etcd side by side."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests import servers
from tests.tlscerts import make_pki

ETCD351 = os.environ.get("KVCORE_TEST_ETCD351", "/opt/etcd351/bin/etcd")
_VARYING = {"cluster_id", "member_id", "raft_term"}


def _norm(obj):
    if isinstance(obj, dict):
        return {k: ("*" if k in _VARYING else _norm(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_norm(v) for v in obj]
    return obj


def _curl_h2(srv, ca: str, path: str, body: str, max_time: float):
    """(HTTP version and status line, JSON objects of the body) of one h2 POST."""
    out = subprocess.run(
        ["curl", "-s", "-i", "--http2", "--cacert", ca, "-m", str(max_time), "-X", "POST",
         f"https://127.0.0.1:{srv.port}{path}", "-d", body],
        capture_output=True, timeout=max_time + 20)
    head, _, rest = out.stdout.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode().strip()
    objs = [_norm(json.loads(x)) for x in rest.splitlines() if x.strip()]
    return status, objs


# The gateway over HTTP/2 is the native engine's own HTTP/2 stack; the grpcio
# engine's front (pure-Python mode) prefers http/1.1 by ALPN and hands h2 to grpcio.
@pytest.mark.native_engine
def test_watch_and_keepalive_stream_over_h2_as_etcd(tmp_path):
    pki = make_pki(str(tmp_path / "pki"))
    tls = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), extra=tls, scheme="https")
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351, extra=tls,
                                scheme="https")
    except BaseException:
        kv.stop()
        raise
    try:
        got = []
        for srv in (kv, et):
            _curl_h2(srv, pki.ca, "/v3/kv/put", '{"key":"azE=","value":"eA=="}', 20)
            # The watch stays open (curl gives up at -m): its history arrives first.
            watch = _curl_h2(srv, pki.ca, "/v3/watch",
                             '{"create_request":{"key":"azE=","start_revision":"1"}}', 4)
            keep = _curl_h2(srv, pki.ca, "/v3/lease/keepalive", '{"ID":"77"}', 20)
            got.append((watch, keep))
        assert got[0] == got[1], got
        (status, objs), _ = got[0]
        assert status == "HTTP/2 200"
        assert objs[0]["result"]["created"] is True
        assert objs[1]["result"]["events"][0]["kv"]["value"] == "eA=="
    finally:
        kv.stop()
        et.stop()
