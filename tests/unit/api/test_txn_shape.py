"""txn_shape (one walk over a Txn's ops, used by the core to route a Txn) gives what
the three separate walks give, on random nested Txns."""
from hypothesis import given, settings, strategies as st

from kvcore.api import rpc_pb2
from kvcore.api.rules import is_txn_readonly, is_txn_serializable, txn_puts, txn_shape


def _op(kind: str, serializable: bool, inner):
    if kind == "range":
        return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(
            key=b"k", serializable=serializable))
    if kind == "put":
        return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"k", value=b"v"))
    if kind == "delete":
        return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"k"))
    return rpc_pb2.RequestOp(request_txn=inner)


def _txns():
    leaf = st.builds(lambda: rpc_pb2.TxnRequest())

    def extend(inner):
        op = st.builds(_op, st.sampled_from(["range", "put", "delete", "txn"]),
                       st.booleans(), inner)
        return st.builds(lambda s, f: rpc_pb2.TxnRequest(success=s, failure=f),
                         st.lists(op, max_size=4), st.lists(op, max_size=4))
    return st.recursive(leaf, extend, max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(_txns())
def test_txn_shape_matches_the_three_walks(r):
    readonly, serializable, puts = txn_shape(r)
    assert readonly == is_txn_readonly(r)
    assert puts == txn_puts(r)
    assert serializable == (readonly and is_txn_serializable(r))
