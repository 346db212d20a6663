"""Random Txns (puts, deletes, ranges, nested txns, compares on a few keys) sent to
kvcore and to etcd 3.5.1 in the same order: the same answers (success flag and every
nested response, or the same error), the same keys afterwards (revisions, versions,
values), and the same live watch events. Covers the request checks of the workers
(duplicate keys: etcd's checkIntervals) and the apply of the core (one revision per
txn, a sub-revision per change, create revision and version from the index)."""
import random

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

ETCD351 = "/opt/etcd351/bin/etcd"
KEYS = [b"a", b"b", b"c", b"d"]


def _op(rnd, depth):
    kind = rnd.choice(["put", "put", "put", "del", "range", "txn"] if depth < 2 else
                      ["put", "put", "del", "range"])
    if kind == "put":   # now and then an empty key: which check refuses first
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=b"" if rnd.random() < 0.02 else rnd.choice(KEYS), value=b"v%d" % rnd.randrange(100), prev_kv=rnd.random() < 0.3))
    if kind == "del":
        key = rnd.choice(KEYS)
        end = rnd.choice([b"", b"", b"c", b"\x00"])
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
            key=key, range_end=end if end == b"\x00" or end > key else b"",
            prev_kv=rnd.random() < 0.3))
    if kind == "range":
        return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=rnd.choice(KEYS)))
    return rpc_pb2.RequestOp(request_txn=_txn(rnd, depth + 1))


def _txn(rnd, depth=0):
    cmp = [rpc_pb2.Compare(key=rnd.choice(KEYS), target=rpc_pb2.Compare.VERSION,
                           result=rnd.choice([rpc_pb2.Compare.GREATER, rpc_pb2.Compare.EQUAL]),
                           version=rnd.randrange(2)) for _ in range(rnd.randrange(2))]
    return rpc_pb2.TxnRequest(
        compare=cmp,
        success=[_op(rnd, depth) for _ in range(rnd.randrange(1, 5))],
        failure=[_op(rnd, depth) for _ in range(rnd.randrange(0, 3))])


def _answer(stub, req):
    try:
        resp = stub.Txn(req, timeout=10)
    except grpc.RpcError as e:
        return ("error", e.code(), e.details())
    resp.ClearField("header")
    return ("ok", resp.SerializeToString(deterministic=True))


def _state(stub):
    r = stub.Range(rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00"), timeout=10)
    return r.header.revision, [kv.SerializeToString() for kv in r.kvs]


def _watch(ch):
    """A watch on every key, created before the first txn: the live events."""
    stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b"\x00", range_end=b"\x00",
                                                  prev_kv=True))]), timeout=60)
    assert next(stream).created
    return stream


def _events(stream, rev):
    """Events up to revision ``rev``, as (revision, its events) per watch response."""
    got = []
    for resp in stream:
        if resp.events:
            got.append((resp.header.revision, [
                (e.type, e.kv.SerializeToString(), e.prev_kv.SerializeToString())
                for e in resp.events]))
            if resp.events[-1].kv.mod_revision >= rev:
                break
    stream.cancel()
    return got


def test_random_txns_match_etcd(tmp_path):
    kv = servers.start_kvcore(str(tmp_path / "kv"), workers=2)
    try:
        et = servers.start_etcd(str(tmp_path / "etcd"), binary=ETCD351)
        try:
            with grpc.insecure_channel(kv.endpoint) as kc, \
                    grpc.insecure_channel(et.endpoint) as ec:
                ks, es = rpc_pb2_grpc.KVStub(kc), rpc_pb2_grpc.KVStub(ec)
                kw, ew = _watch(kc), _watch(ec)
                put = lambda k: rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k))
                # a duplicate key ahead of an empty one (also inside a nested txn): the
                # request checks come first, the duplicate check after
                for req in (rpc_pb2.TxnRequest(success=[put(b"a"), put(b"a"), put(b"")]),
                            rpc_pb2.TxnRequest(success=[put(b"a"), put(b"a")], failure=[
                                rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
                                    success=[put(b"")]))])):
                    assert _answer(ks, req) == _answer(es, req) == (
                        "error", grpc.StatusCode.INVALID_ARGUMENT,
                        "etcdserver: key is not provided")
                rnd = random.Random(23)
                outcomes = set()
                for i in range(200):
                    req = _txn(rnd)
                    a, b = _answer(ks, req), _answer(es, req)
                    assert a == b, (i, req)
                    outcomes.add(a[0] if a[0] == "ok" else a[2])
                    if i % 25 == 24:
                        assert _state(ks) == _state(es), i
                # the sequence exercised both paths: applied txns and refused duplicates
                assert "ok" in outcomes
                assert "etcdserver: duplicate key given in txn request" in outcomes
                assert "etcdserver: key is not provided" in outcomes
                rev, state = _state(es)
                assert _state(ks) == (rev, state)
                assert rev > 1
                # a txn's events come in one response, at its revision, in change order
                assert _events(kw, rev) == _events(ew, rev)
        finally:
            et.stop()
    finally:
        kv.stop()
