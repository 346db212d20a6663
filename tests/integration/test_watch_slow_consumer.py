"""A watcher that never reads while many writes go through: the writes finish,
other watchers get every event, the core marks the slow watcher unsynced instead
of buffering for it, and once it reads it catches up with no gap or duplicate.

(Throughput and latency figures for this scenario come from bench/probes/watch_slow.py;
tests assert behaviour only.)
"""
import os
import re
import threading
import time
import urllib.request

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

# the native engine's flow control and its /metrics on the client port are the subject
pytestmark = pytest.mark.native_engine

N = int(os.environ.get("KVCORE_SLOW_WATCH_WRITES", "6000"))
VALUE = b"v" * 1024


def _metric(srv, name):
    text = urllib.request.urlopen(f"http://{srv.endpoint}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1))


def _requests(create, hold: threading.Event):
    yield rpc_pb2.WatchRequest(create_request=create)
    hold.wait(120)


def test_slow_watcher_does_not_block_writes_or_others(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2,
                               extra=("--grpc-engine", "native"))
    hold = threading.Event()
    try:
        create = rpc_pb2.WatchCreateRequest(key=b"k/", range_end=b"k0")
        slow_ch = grpc.insecure_channel(srv.endpoint)
        slow = rpc_pb2_grpc.WatchStub(slow_ch).Watch(_requests(create, hold))
        assert next(slow).created  # then it stops reading

        fast_ch = grpc.insecure_channel(srv.endpoint)
        fast = rpc_pb2_grpc.WatchStub(fast_ch).Watch(_requests(create, hold))
        assert next(fast).created
        fast_revs = []

        def read_fast():
            for resp in fast:
                fast_revs.extend(e.kv.mod_revision for e in resp.events)
                if len(fast_revs) >= N:
                    return

        reader = threading.Thread(target=read_fast, daemon=True)
        reader.start()

        def write(t):
            with grpc.insecure_channel(srv.endpoint) as ch:
                kv = rpc_pb2_grpc.KVStub(ch)
                for i in range(t, N, 8):
                    kv.Put(rpc_pb2.PutRequest(key=b"k/%06d" % i, value=VALUE), timeout=30)

        writers = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for w in writers:
            w.start()
        for w in writers:
            w.join(300)
        assert not any(w.is_alive() for w in writers), "writes stalled"
        reader.join(120)
        assert fast_revs == list(range(2, N + 2)), "the reading watcher missed events"
        # The core stopped pushing to the slow watcher: it waits in the unsynced set.
        assert _metric(srv, "etcd_debugging_mvcc_slow_watcher_total") >= 1

        # Now the slow watcher reads: it catches up from history, in order, whole.
        slow_revs = []
        for resp in slow:
            assert not resp.canceled
            slow_revs.extend(e.kv.mod_revision for e in resp.events)
            if len(slow_revs) >= N:
                break
        assert slow_revs == list(range(2, N + 2))
        assert _metric(srv, "etcd_debugging_mvcc_slow_watcher_total") == 0
    finally:
        hold.set()
        srv.stop()


def test_slow_watcher_overtaken_by_compaction_is_cancelled(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               extra=("--grpc-engine", "native"))
    hold = threading.Event()
    try:
        ch = grpc.insecure_channel(srv.endpoint)
        create = rpc_pb2.WatchCreateRequest(key=b"k/", range_end=b"k0")
        slow = rpc_pb2_grpc.WatchStub(ch).Watch(_requests(create, hold))
        assert next(slow).created
        with grpc.insecure_channel(srv.endpoint) as wch:
            kv = rpc_pb2_grpc.KVStub(wch)
            for i in range(2000):  # ~16 MB of events: more than every buffer on the way
                r = kv.Put(rpc_pb2.PutRequest(key=b"k/%d" % (i % 10), value=VALUE * 8),
                           timeout=30)
            assert _metric(srv, "etcd_debugging_mvcc_slow_watcher_total") == 1
            kv.Compact(rpc_pb2.CompactionRequest(revision=r.header.revision, physical=True))
        revs, cancel = [], None
        for resp in slow:
            revs.extend(e.kv.mod_revision for e in resp.events)
            if resp.canceled:
                cancel = resp
                break
        assert cancel is not None and cancel.compact_revision == r.header.revision
        # What it received before the cancellation had no gap.
        assert revs == list(range(2, 2 + len(revs)))
    finally:
        hold.set()
        srv.stop()
