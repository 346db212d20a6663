"""A lone put is applied into a write transaction left open while its WAL entry is
being fdatasynced, and committed (made visible, answered) only once the sync has
returned (docs/decisions.md, "A lone put: its apply staged while the WAL syncs").
The apply-staged failpoint holds the member inside that window.

etcd 3.5.1 is no oracle here: a one-member etcd 3.5.1 applies and answers a put
before its fdatasync (decisions, "A lone put against etcd 3.5.1"); kvcore's rule is
that nothing is seen or acknowledged before it is durable."""
from __future__ import annotations

import subprocess
import time

from kvcore import failpoints
from tests import servers

HOLD_MS = 1500


def _put(srv, key: str, value: str) -> subprocess.Popen:
    return subprocess.Popen([servers.ETCDCTL, "--endpoints", srv.endpoint,
                             "--command-timeout=20s", "put", key, value],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


def _get(srv, key: str) -> str:
    code, out, err = srv.etcdctl("get", key, "--consistency=s")   # the worker reads LMDB
    assert code == 0, err
    return out


def test_a_staged_put_is_neither_seen_nor_answered_before_its_sync(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               env_extra={failpoints.ENV: f"apply-staged=sleep({HOLD_MS})"})
    try:
        t0 = time.monotonic()
        first = _put(srv, "first", "1")
        assert first.wait(30) == 0, first.stderr.read()
        assert time.monotonic() - t0 >= HOLD_MS / 1000   # the put went through the window
        assert _get(srv, "first") == "first\n1\n"

        put = _put(srv, "k", "v")
        time.sleep(HOLD_MS / 1000 / 2)                      # inside its window
        assert _get(srv, "k") == ""                          # not visible ...
        assert put.poll() is None                            # ... nor answered
        assert put.wait(30) == 0, put.stderr.read()
        assert put.stdout.read().strip() == "OK"
        assert _get(srv, "k") == "k\nv\n"
    finally:
        srv.stop()


def test_a_crash_inside_the_window_loses_no_acknowledged_put(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               env_extra={failpoints.ENV: "apply-staged=crash@2"})
    try:
        code, out, err = srv.etcdctl("put", "acked", "1")
        assert (code, out.strip()) == (0, "OK"), err
        put = _put(srv, "unacked", "2")   # the member dies with it staged, unsynced
        assert put.wait(30) != 0
        assert srv.proc.wait(30) == 86
        srv.env = {k: v for k, v in srv.env.items() if k != failpoints.ENV}
        srv.restart()
        assert _get(srv, "acked") == "acked\n1\n"
        # Its WAL record was written (not synced) before the crash: a process crash
        # keeps it, so the restart replays it; the half-done transaction left nothing.
        assert _get(srv, "unacked") == "unacked\n2\n"
        code, out, err = srv.etcdctl("put", "after", "3")
        assert (code, out.strip()) == (0, "OK"), err
        assert _get(srv, "after") == "after\n3\n"
    finally:
        srv.stop()
