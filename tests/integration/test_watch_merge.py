"""Merged delivery for watchers that fall behind (etcd's victims and unsynced
watchers): a stream that does not keep up gets each watcher's events of several
revisions in one response, in revision order, none lost or repeated; a watcher that
keeps up gets one response per revision, as from etcd 3.5.1.
"""
import queue
import threading

import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

WATCHERS = 150      # on one stream: more than its window (WATCH_WINDOW, 128)
PUTS = 200


def _requests(reqs: queue.Queue):
    while True:
        r = reqs.get()
        if r is None:
            return
        yield r


def _open(endpoint, n, **create):
    """One Watch stream with ``n`` watchers on key ``m``; -> (channel, responses,
    request queue, the watch ids)."""
    ch = grpc.insecure_channel(endpoint)
    reqs: queue.Queue = queue.Queue()
    for _ in range(n):
        reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"m", **create)))
    stream = rpc_pb2_grpc.WatchStub(ch).Watch(_requests(reqs))
    ids = [next(stream) for _ in range(n)]
    assert all(r.created for r in ids)
    return ch, stream, reqs, [r.watch_id for r in ids]


def test_slow_reader_gets_merged_responses_every_event_once_in_order(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    try:
        ch, stream, reqs, ids = _open(srv.endpoint, WATCHERS, prev_kv=True)
        # The client stops reading while the writes go through.
        with grpc.insecure_channel(srv.endpoint) as wch:
            kv = rpc_pb2_grpc.KVStub(wch)
            for i in range(PUTS):
                last = kv.Put(rpc_pb2.PutRequest(key=b"m", value=b"v%d" % i), timeout=30)
        top = last.header.revision
        # Then it reads everything.
        got = {wid: [] for wid in ids}
        responses = 0
        for resp in stream:
            assert not resp.canceled and not resp.created
            responses += 1
            revs = [e.kv.mod_revision for e in resp.events]
            assert resp.header.revision >= revs[-1]
            for e in resp.events:
                # prev_kv holds the put before this one
                assert e.prev_kv.mod_revision == (e.kv.mod_revision - 1 if
                                                  e.kv.mod_revision > 2 else 0)
            got[resp.watch_id].extend(revs)
            if sum(len(v) for v in got.values()) >= WATCHERS * PUTS:
                break
        want = list(range(top - PUTS + 1, top + 1))
        assert all(got[w] == want for w in ids)     # each event once, in order
        assert responses < WATCHERS * PUTS // 2     # merged: several revisions a response
        reqs.put(None)
        ch.close()
    finally:
        srv.stop()


def _one_response_per_revision(endpoint, n) -> list:
    """``n`` watchers on one stream whose client reads each put's events before the
    next put: how many events each response carried."""
    ch, stream, reqs, _ = _open(endpoint, n)
    per_response = []
    try:
        with grpc.insecure_channel(endpoint) as wch:
            kv = rpc_pb2_grpc.KVStub(wch)
            for i in range(20):
                rev = kv.Put(rpc_pb2.PutRequest(key=b"m", value=b"%d" % i),
                             timeout=30).header.revision
                for _ in range(n):
                    resp = next(stream)
                    per_response.append(len(resp.events))
                    assert resp.header.revision == rev
                    assert [e.kv.mod_revision for e in resp.events] == [rev]
    finally:
        reqs.put(None)
        ch.close()
    return per_response


# 100 watchers fit a stream's window (etcd's 128): keeping up, they are not merged
@pytest.mark.parametrize("n", [1, 100])
@pytest.mark.parametrize("which", ["kvcore", "etcd351"])
def test_watchers_that_keep_up_get_one_response_per_revision(tmp_path, which, n):
    if which == "kvcore":
        srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    else:
        srv = servers.start_etcd(str(tmp_path / "etcd"), binary=servers.ETCD351)
    try:
        assert _one_response_per_revision(srv.endpoint, n) == [1] * 20 * n
    finally:
        srv.stop()
