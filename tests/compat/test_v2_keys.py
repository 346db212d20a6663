"""The v2 keys API (--enable-v2) against etcd 3.4.23's: a scripted session of
the tutorials' curl examples and more (set, get, update with prevValue, CAS
failure, TTL expiry, wait with waitIndex, recursive sorted listing, in-order
POST, delete dir, bad parameters) gives the same status, client headers and
bodies (indexes and times normalised); and etcdctl 3.4 in v2 mode works."""
from __future__ import annotations

import json
import os
import subprocess

from tests import servers
from tests.compat import v2session
from tests.httpraw import call

ETCD34 = "/usr/bin/etcd"
ETCDCTL34 = "/usr/bin/etcdctl"


def test_v2_session_matches_etcd_34(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=("--enable-v2",))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34,
                                extra=("--enable-v2",))
        try:
            want = v2session.normalise(v2session.run(et.port))
            got = v2session.normalise(v2session.run(kv.port))
            shapes = [_shapes(srv.port) for srv in (kv, et)]
            assert shapes[0] == shapes[1]
            streams = [_stream_watch(srv.port) for srv in (kv, et)]
            assert streams[0] == streams[1] == [("set", "1", False), ("set", "2", True)]
        finally:
            et.stop()
    finally:
        kv.stop()
    for g, w in zip(got, want):
        assert g == w, f"\nkvcore {g}\netcd   {w}"
    assert len(got) == len(want)


def _shapes(port) -> list:
    """Status, content type and field names of the v2 member and stats pages."""
    out = []
    for path in ("/v2/members", "/v2/machines", "/v2/stats/self", "/v2/stats/leader",
                 "/v2/stats/store"):
        st, hdrs, body = call(port, path, method="GET")
        doc = json.loads(body) if "json" in hdrs.get("content-type", "") else None
        out.append((path, st, hdrs.get("content-type"),
                    sorted(doc) if isinstance(doc, dict) else body.count(b"http://"),
                    sorted(doc["leaderInfo"]) if path.endswith("self") else None))
    return out


def _stream_watch(port) -> list:
    """wait=true&stream=true: the next two changes on one chunked answer."""
    import threading
    import time
    from tests.httpraw import request

    def puts():
        # Once the watcher is registered (etcd's store stats count it)...
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, _, body = call(port, "/v2/stats/store", method="GET")
            if json.loads(body)["watchers"] >= 1:
                break
            time.sleep(0.05)
        for v in ("1", "2"):
            call(port, "/v2/keys/streamed", raw=f"value={v}".encode(), method="PUT",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    t = threading.Thread(target=puts)
    t.start()
    # etcd answers the headers at once, kvcore with the first event.
    r = request(port, "GET", "/v2/keys/streamed?wait=true&stream=true")
    t.join()
    try:
        assert r.status == 200 and r.chunked
        out = []
        while len(out) < 2:
            c = r.chunk()
            if c is None:
                break
            for line in c.splitlines():
                if line.strip():
                    ev = json.loads(line)
                    out.append((ev["action"], ev["node"]["value"], "prevNode" in ev))
        return out
    finally:
        r.close()


def _ctl(port, *args, timeout=15):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.run([ETCDCTL34, "--endpoints", f"http://127.0.0.1:{port}", *args],
                       capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def _watch_sees_next_set(port) -> str:
    """etcdctl watch waits for the next change of a key and prints its value."""
    import time
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.Popen([ETCDCTL34, "--endpoints", f"http://127.0.0.1:{port}", "watch", "/b"],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 15
        while p.poll() is None and time.monotonic() < deadline:
            _ctl(port, "set", "/b", "changed")    # until the watcher has seen one
            try:
                return p.communicate(timeout=0.5)[0]
            except subprocess.TimeoutExpired:
                continue
        return p.communicate(timeout=5)[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _exec_watch_runs(port, tmp_path) -> str:
    """etcdctl exec-watch runs its command with the change in ETCD_WATCH_* (etcdctl
    3.4 takes the key last when no flag precedes it)."""
    import time
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\necho "$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"\n')
    hook.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    p = subprocess.Popen([ETCDCTL34, "--endpoints", f"http://127.0.0.1:{port}", "exec-watch",
                          str(hook), "/ew"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 15
        line = ""
        os.set_blocking(p.stdout.fileno(), False)
        while not line and time.monotonic() < deadline:
            _ctl(port, "set", "/ew", "changed")    # until the hook has run once
            time.sleep(0.3)
            line = p.stdout.readline() or ""
        return line
    finally:
        p.kill()
        p.wait()


V2CTL = [
    ("set", "/a", "1"), ("get", "/a"), ("mk", "/a", "2"), ("mk", "/b", "2"),
    ("update", "/a", "3"), ("update", "/zz", "3"), ("set", "--swap-with-value", "3", "/a", "4"),
    ("set", "--swap-with-value", "9", "/a", "5"), ("mkdir", "/d"), ("set", "/d/x", "y"),
    ("ls", "--recursive", "--sort", "/"), ("rm", "/d"), ("rm", "--recursive", "/d"),
    ("rmdir", "/nothere"), ("get", "/d/x"), ("rm", "/a"), ("ls", "--sort", "/"),
]


def test_etcdctl_v2_mode_matches_etcd_34(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=("--enable-v2",))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34,
                                extra=("--enable-v2",))
        try:
            for args in V2CTL:
                w = _ctl(et.port, *args)
                g = _ctl(kv.port, *args)
                # etcdctl prints the server index in some errors: compare the rest.
                strip = lambda s: s.split("[")[0]
                assert (g[0], g[1], strip(g[2])) == (w[0], w[1], strip(w[2])), args
            for port in (et.port, kv.port):
                assert _watch_sees_next_set(port) == "changed\n"
            hooks = [_exec_watch_runs(port, tmp_path) for port in (et.port, kv.port)]
            assert hooks[0] == hooks[1] == "set /ew changed\n"
        finally:
            et.stop()
    finally:
        kv.stop()


def test_v2_keys_survive_a_restart_and_are_off_without_the_flag(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=("--enable-v2",))
    try:
        assert _ctl(kv.port, "set", "/kept", "yes")[0] == 0
        assert _ctl(kv.port, "set", "--ttl", "600", "/ttl", "t")[0] == 0
        kv = kv.restart()
        assert _ctl(kv.port, "get", "/kept")[1] == "yes\n"
        assert _ctl(kv.port, "get", "/ttl")[1] == "t\n"
    finally:
        kv.stop()
    plain = servers.start_kvcore(str(tmp_path / "plain.etcd"), workers=1)
    try:
        from tests.httpraw import call
        st, _, body = call(plain.port, "/v2/keys/x", method="GET")
        assert (st, body) == (404, b"404 page not found\n")
    finally:
        plain.stop()


def test_v2_event_history_survives_a_restart_as_etcd_34(tmp_path):
    """etcd 3.4 rebuilds its v2 history by replaying the WAL: a wait on an index
    from before a restart still gets that event. kvcore keeps the history in its
    backend; both answer the same."""
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=("--enable-v2",))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34,
                                extra=("--enable-v2",))
    except BaseException:
        kv.stop()
        raise
    got, running = [], [kv, et]
    try:
        for srv in (kv, et):
            first = None
            for v in ("v1", "v2", "v3"):
                st, _, body = call(srv.port, "/v2/keys/hist", raw=f"value={v}".encode(),
                                   method="PUT", headers={
                                       "Content-Type": "application/x-www-form-urlencoded"})
                assert st in (200, 201), body
                first = first or json.loads(body)["node"]["modifiedIndex"]
            srv = srv.restart()
            running.append(srv)
            answers = []
            for since in (first, first + 1):
                st, _, body = call(srv.port, f"/v2/keys/hist?wait=true&waitIndex={since}",
                                   method="GET")
                doc = json.loads(body)
                answers.append((st, doc["action"], doc["node"]["value"],
                                doc["node"]["modifiedIndex"] - first,
                                doc.get("prevNode", {}).get("value")))
            got.append(answers)
    finally:
        for srv in running:
            srv.stop()
    assert got[0] == got[1] == [(200, "set", "v1", 0, None), (200, "set", "v2", 1, "v1")]
