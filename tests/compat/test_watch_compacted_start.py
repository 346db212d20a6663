"""A watch that starts at, or below, a physically compacted revision, against etcd
3.5.1: below it the watch is cancelled with the compaction revision; at it, a delete
made at exactly that revision is gone with its tombstone (etcd's keyIndex.compact keeps
none), so the first event is the next change. The watch hub's property test
(tests/unit/mvcc/test_watch_model.py) relies on this rule.
"""
import queue

import grpc
import pytest

from kvcore.api import kv_pb2, rpc_pb2, rpc_pb2_grpc
from tests import servers


def _first_two(endpoint, start: int, kv, put_after_created: bool) -> list:
    """Open a watch on ``a`` from ``start`` (and put ``a`` once more when it is
    created, if asked); -> the first two responses as (created, canceled,
    compact_revision, [(type, mod_revision)], header revision of a cancellation)."""
    reqs: queue.Queue = queue.Queue()
    reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b"a", start_revision=start)))

    def gen():
        while True:
            r = reqs.get()
            if r is None:
                return
            yield r
    with grpc.insecure_channel(endpoint) as ch:
        stream = rpc_pb2_grpc.WatchStub(ch).Watch(gen(), timeout=30)
        out = []
        try:
            for resp in stream:
                out.append((resp.created, resp.canceled, resp.compact_revision,
                            [(e.type, e.kv.mod_revision) for e in resp.events],
                            resp.header.revision if resp.canceled else None))
                if put_after_created and resp.created and not resp.canceled:
                    kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"again"), timeout=30)
                if len(out) == 2:
                    break
        finally:
            reqs.put(None)
            stream.cancel()
        return out


def _scenario(endpoint) -> dict:
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=30)
        kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"2"), timeout=30)
        rev = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"a"), timeout=30).header.revision
        kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=30)
        got = {"deleted_at": rev}
        got[-1] = _first_two(endpoint, rev - 1, kv, False)
        got[0] = _first_two(endpoint, rev, kv, True)
        return got


@pytest.mark.parametrize("which", ["kvcore", "etcd351"])
def test_watch_from_a_compacted_revision(tmp_path, which):
    if which == "kvcore":
        srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    else:
        srv = servers.start_etcd(str(tmp_path / "etcd"), binary=servers.ETCD351)
    try:
        got = _scenario(srv.endpoint)
    finally:
        srv.stop()
    rev = got["deleted_at"]
    put = kv_pb2.Event.PUT
    # Below the compaction: created, then cancelled with the compaction revision (and
    # no revision in its header: etcd's mvcc sends that response with none).
    assert got[-1] == [(True, False, 0, [], None), (False, True, rev, [], 0)]
    # At it: the delete at the compaction revision is not delivered; the next put is.
    assert got[0] == [(True, False, 0, [], None), (False, False, 0, [(put, rev + 1)], None)]
