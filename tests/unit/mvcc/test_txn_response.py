"""The hand-assembled TxnResponse of a write Txn is byte for byte what protobuf
serializes for the same message (each ResponseOp with its revision's header), also
when ops share one assembled part (puts without prev_kv, deletes of nothing)."""
from kvcore.api import rpc_pb2
from kvcore.lease.lessor import Lessor
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.store import KVStore
from kvcore.storage.backend import Backend


def _txn(kv, backend, store, r):
    with backend.begin_write() as txn:
        w = store.write(txn)
        rev, body = kv.txn(w, r)
        w.end()
    return rev, body


def test_write_txn_response_is_protobufs_own(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=64 << 20)
    store = KVStore(backend)
    kv = KVApplier(store, Lessor(backend, 1))
    _txn(kv, backend, store, rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=b"a", value=b"old"))]))
    put = lambda k, **kw: rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"v", **kw))
    r = rpc_pb2.TxnRequest(success=[
        put(b"x"), put(b"y"), put(b"a", prev_kv=True), put(b"z"),
        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"none")),
        rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"none")),
        rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[put(b"n1"), put(b"n2")])),
    ])
    rev, body = _txn(kv, backend, store, r)
    got = rpc_pb2.TxnResponse.FromString(body)
    assert got.SerializeToString() == body
    assert got.succeeded and len(got.responses) == 7
    assert [x.response_put.header.revision for x in got.responses[:4]] == [rev] * 4
    assert got.responses[2].response_put.prev_kv.value == b"old"
    assert not got.responses[0].response_put.HasField("prev_kv")
    assert got.responses[4].response_delete_range.header.revision == rev
    assert got.responses[4].response_delete_range.deleted == 0
    nested = got.responses[6].response_txn
    assert [x.response_put.header.revision for x in nested.responses] == [rev, rev]
    assert nested.header.revision == 0   # a nested txn: an empty header


def test_plain_put_txn_read_without_protobuf_is_the_same(tmp_path):
    """KVApplier.txn_puts (a Txn of plain puts, read by wire.txn_plain_puts) writes
    the same store and answers the same bytes as the protobuf walk of KVApplier.txn,
    and refuses a missing lease the same way before writing anything."""
    from kvcore.api import wire
    from kvcore.api.errors import EtcdError
    from kvcore.engine.base import GrpcError
    import pytest

    def fresh(name):
        backend = Backend(str(tmp_path / name), map_size=64 << 20)
        store = KVStore(backend)
        lessor = Lessor(backend, 1)
        with backend.begin_write() as txn:
            lessor.grant(txn, 7, 60)
        return backend, store, KVApplier(store, lessor)

    put = lambda k, v, l=0: rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v, lease=l))
    txns = [rpc_pb2.TxnRequest(success=[put(b"a", b"1"), put(b"b", b"2", 7)]),
            rpc_pb2.TxnRequest(success=[put(b"b", b"3"), put(b"c", b"")]),
            rpc_pb2.TxnRequest(success=[put(b"d", b"4"), put(b"a", b"5", 99)])]   # no lease 99
    (b1, s1, k1), (b2, s2, k2) = fresh("one"), fresh("two")
    for r, refused in zip(txns, (False, False, True)):
        data = r.SerializeToString()
        puts = wire.txn_plain_puts(data)
        assert puts is not None
        outs = []
        for backend, store, kv, fn in ((b1, s1, k1, lambda kv, w: kv.txn(w, r)),
                                       (b2, s2, k2, lambda kv, w: kv.txn_puts(w, puts))):
            try:
                outs.append(_txn_fn(backend, store, lambda w: fn(kv, w)))
            except GrpcError as e:
                outs.append(e.message)
        assert outs[0] == outs[1]
        assert (outs[0] == EtcdError.LEASE_NOT_FOUND[1]) == refused
    assert s1.current_rev == s2.current_rev == 3
    with b1.begin_read() as t1, b2.begin_read() as t2:
        for db in ("key", "latest"):
            assert list(t1.cursor(db=getattr(b1, db))) == list(t2.cursor(db=getattr(b2, db)))


def _txn_fn(backend, store, fn):
    with backend.begin_write() as txn:
        w = store.write(txn)
        out = fn(w)
        w.end()
    return out
