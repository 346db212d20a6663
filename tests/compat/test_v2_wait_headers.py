"""A v2 wait (GET ?wait=true) answers its headers before its event, as etcd 3.4.23's
handleKeyWatch flushes them: 200, chunked, X-Etcd-Index at the watch's start, the
raft headers; the event follows as the body's one chunk. Clients rely on it:
python-etcd raises EtcdWatchTimedOut only when its read timeout ends the body read
(a timeout before the headers is a failed connection, and urllib3 first retries the
GET three times). A wait whose client goes away leaves no watcher behind."""
from __future__ import annotations

import json
import socket
import time

from tests import servers
from tests.httpraw import call, request

ETCD34 = "/usr/bin/etcd"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _put(port, key, value) -> int:
    st, _, body = call(port, f"/v2/keys/{key}", raw=f"value={value}".encode(), method="PUT",
                       headers=FORM)
    assert st in (200, 201), body
    return json.loads(body)["node"]["modifiedIndex"]


def _watchers(port) -> int:
    return json.loads(call(port, "/v2/stats/store", method="GET")[2])["watchers"]


def _head(r, base: int) -> tuple:
    h = r.headers
    return (r.status, r.chunked, h.get("content-type"), int(h["x-etcd-index"]) - base,
            "x-raft-index" in h, "x-raft-term" in h, "x-etcd-cluster-id" in h)


def _session(port) -> dict:
    out = {}
    base = _put(port, "w", "a")
    # No event yet: the headers come within the timeout all the same.
    r = request(port, "GET", "/v2/keys/w?wait=true", timeout=5)
    try:
        out["parked_head"] = _head(r, base)
        _put(port, "w", "b")
        ev = json.loads(r.chunk())
        out["parked_event"] = (ev["action"], ev["node"]["value"], ev["prevNode"]["value"],
                               ev["node"]["modifiedIndex"] - base)
        out["parked_end"] = r.chunk()
    finally:
        r.close()
    # An event already in the history: the same shape.
    r = request(port, "GET", f"/v2/keys/w?wait=true&waitIndex={base}", timeout=5)
    try:
        out["past_head"] = _head(r, base)
        out["past_event"] = json.loads(r.body())["node"]["value"]
    finally:
        r.close()
    # A recursive wait on a directory, the event below it.
    r = request(port, "GET", "/v2/keys/d?wait=true&recursive=true", timeout=5)
    try:
        out["recursive_head"] = _head(r, base)
        _put(port, "d/x/y", "z")
        out["recursive_event"] = json.loads(r.body())["node"]["key"]
    finally:
        r.close()
    # The client goes away while waiting: its watcher goes too.
    before = _watchers(port)
    waits = [request(port, "GET", "/v2/keys/gone?wait=true", timeout=5) for _ in range(3)]
    out["waiting"] = _watchers(port) - before
    for r in waits:
        r.sock.shutdown(socket.SHUT_RDWR)
        r.close()
    deadline = time.monotonic() + 10
    while _watchers(port) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    out["after_gone"] = _watchers(port) - before
    return out


def test_wait_headers_before_event_as_etcd_34(tmp_path):
    with servers.kvcore_and_etcd(tmp_path, ("--enable-v2",), ("--enable-v2",), workers=2,
                                 etcd_binary=ETCD34) as (kv, et):
        got, want = _session(kv.port), _session(et.port)
    assert got == want
    assert want["parked_head"] == (200, True, "application/json", 0, True, True, True)
    assert want["parked_event"] == ("set", "b", "a", 1)
    assert (want["waiting"], want["after_gone"]) == (3, 0)
