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
