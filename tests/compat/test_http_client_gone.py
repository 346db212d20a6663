"""A client that goes away in the middle of a long request leaves nothing behind, as
on etcd: a v2 wait (against etcd 3.4.23) and a JSON-gateway watch stream (against
etcd 3.5.1) whose client closes its socket are ended at once, not when their key next
changes. Go's server ends a request on its read side's EOF; kvcore's HTTP/1 front used
to keep the half-closed connection for the answer, so the wait stayed registered."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests import etcd351, servers
from tests.httpraw import call

ETCD34 = "/usr/bin/etcd"


def _send_and_close(port: int, raw: bytes, shut_write_only: bool) -> None:
    """Send a request, give the server a moment to take it, then leave."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    time.sleep(0.3)
    if shut_write_only:
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
    s.close()


def _v2_watchers(port: int) -> int:
    st, _, body = call(port, "/v2/stats/store", method="GET")
    assert st == 200, body
    return json.loads(body)["watchers"]


def _settled(fn, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    got = fn()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.1)
        got = fn()
    return got


@pytest.mark.parametrize("shut_write_only", [False, True], ids=["close", "shutdown-write"])
def test_v2_wait_of_a_client_gone_is_removed_like_etcd_34(tmp_path, shut_write_only):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), extra=("--enable-v2",))
    et = servers.start_etcd(str(tmp_path / "et.etcd"), binary=ETCD34, extra=("--enable-v2",))
    try:
        seen = {}
        for name, srv in (("kvcore", kv), ("etcd", et)):
            st, _, _ = call(srv.port, "/v2/keys/w", method="PUT", raw=b"value=1",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert st in (200, 201)
            raw = b"GET /v2/keys/w?wait=true HTTP/1.1\r\nHost: x\r\n\r\n"
            waiting = []
            for _ in range(3):
                _send_and_close(srv.port, raw, shut_write_only)
                waiting.append(_settled(lambda: _v2_watchers(srv.port), 0))
            seen[name] = waiting
        assert seen["kvcore"] == seen["etcd"] == [0, 0, 0], seen
    finally:
        kv.stop()
        et.stop()


def _watchers_metric(srv) -> float:
    st, _, body = call(srv.port, "/metrics", method="GET")
    assert st == 200
    for line in body.decode().splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return float(line.split()[1])
    raise AssertionError("no etcd_debugging_mvcc_watcher_total")


def test_gateway_watch_of_a_client_gone_ends_like_etcd_351(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"))
    et = servers.start_etcd(str(tmp_path / "et.etcd"), binary=etcd351.ETCD)
    try:
        seen = {}
        for name, srv in (("kvcore", kv), ("etcd", et)):
            before = _watchers_metric(srv)
            body = b'{"create_request":{"key":"d2F0Y2g="}}'
            raw = (b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            _send_and_close(srv.port, raw, shut_write_only=False)
            seen[name] = _settled(lambda: _watchers_metric(srv) - before, 0)
        assert seen == {"kvcore": 0, "etcd": 0}, seen
    finally:
        kv.stop()
        et.stop()
