"""--auto-compaction-mode/--auto-compaction-retention against etcd 3.5.1 with the same
flags: a read of an old revision fails with etcd's error a few seconds later."""
from __future__ import annotations

import os
import time

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
COMPACTED = "etcdserver: mvcc: required revision has been compacted"


def _pair(tmp_path, flags):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=flags)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD351, extra=flags)
    except BaseException:
        kv.stop()
        raise
    return kv, et


def _wait_compacted(srv, rev: int, deadline_s: float) -> str:
    """Polls a read at ``rev`` until it fails; -> the error (or '' on timeout)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        rc, _out, err = srv.etcdctl("get", "k", f"--rev={rev}")
        if rc != 0:
            return err.strip()
        # keep the store moving, as a live cluster does
        srv.etcdctl("put", "tick", str(time.monotonic()))
        time.sleep(0.5)
    return ""


def test_periodic_2s_compacts_like_etcd(tmp_path):
    flags = ("--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s")
    kv, et = _pair(tmp_path, flags)
    try:
        for srv in (kv, et):
            for i in range(3):
                assert srv.etcdctl("put", "k", f"v{i}")[0] == 0
            assert srv.etcdctl("get", "k", "--rev=2", "--print-value-only")[1].strip() == "v0"
        errors = {s.kind: _wait_compacted(s, 2, 40) for s in (kv, et)}
        assert errors["etcd"] == f"Error: {COMPACTED}"
        assert errors["kvcore"] == errors["etcd"]
        assert '"msg":"completed auto periodic compaction"' in kv.log()
    finally:
        kv.stop()
        et.stop()


@pytest.mark.slow
def test_revision_mode_compacts_every_five_minutes_like_etcd(tmp_path):
    flags = ("--auto-compaction-mode", "revision", "--auto-compaction-retention", "3")
    kv, et = _pair(tmp_path, flags)
    try:
        for srv in (kv, et):
            for i in range(10):
                assert srv.etcdctl("put", "k", f"v{i}")[0] == 0
        errors = {s.kind: _wait_compacted(s, 5, 400) for s in (kv, et)}
        assert errors["etcd"] == f"Error: {COMPACTED}"
        assert errors["kvcore"] == errors["etcd"]
        assert '"msg":"completed auto revision compaction"' in kv.log()
    finally:
        kv.stop()
        et.stop()
