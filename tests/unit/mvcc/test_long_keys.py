"""Keys longer than an LMDB key (511 bytes): written, read, counted and deleted like any
other, on the core's view (the revision index) and the workers' (``latest`` and
``latest_long``), against a plain model. etcd takes such keys (`etcdctl check
datascale` writes them); a put of one once stopped the member for good, its WAL
replaying the same put at every start.
"""
from hypothesis import HealthCheck, given, settings, strategies as st

from kvcore.api import rpc_pb2
from kvcore.lease.lessor import Lessor
from kvcore.mvcc import longkeys
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.latest import LatestView
from kvcore.mvcc.store import KVStore, ReadView
from kvcore.storage.backend import Backend

L = longkeys.LIMIT
P = b"p" * L
# Short and long keys around the cut: equal prefixes, a short key that is a long
# key's prefix, keys on both sides of a bucket.
KEYS = [b"a", P[:-1], P, P + b"\x00", P + b"a", P + b"a" * 300, P + b"b",
        b"p" * (L - 1) + b"q" + b"x" * 100, b"q" * 2000, b"r"]
key_st = st.sampled_from(KEYS)
bound_st = st.sampled_from(KEYS + [b"\x00", P + b"a\x00", b"p" * 600])

op_st = st.one_of(
    st.tuples(st.just("put"), key_st, st.binary(max_size=3)),
    st.tuples(st.just("txn"), st.lists(st.tuples(key_st, st.binary(max_size=3)),
                                       min_size=1, max_size=4, unique_by=lambda t: t[0])),
    st.tuples(st.just("del"), key_st, bound_st),
)


def _read(kv, view, key, end, limit=0, count_only=False):
    r = rpc_pb2.RangeRequest(key=key, range_end=end, limit=limit, count_only=count_only)
    _, body = kv.range(view, r)
    resp = rpc_pb2.RangeResponse.FromString(body)
    return [(x.key, x.value) for x in resp.kvs], resp.count, resp.more


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, min_size=1, max_size=25),
       ranges=st.lists(st.tuples(bound_st, bound_st, st.integers(0, 3), st.booleans()),
                       min_size=1, max_size=6))
def test_long_keys_read_like_short_ones(tmp_path_factory, ops, ranges):
    backend = Backend(str(tmp_path_factory.mktemp("long") / "db"), map_size=64 << 20)
    store = KVStore(backend)
    kv = KVApplier(store, Lessor(backend, 1))
    model: dict[bytes, bytes] = {}

    def write(fn):
        with backend.begin_write() as txn:
            w = store.write(txn)
            fn(w)
            w.end()

    for op in ops:
        if op[0] == "put":
            write(lambda w: kv.put(w, rpc_pb2.PutRequest(key=op[1], value=op[2])))
            model[op[1]] = op[2]
        elif op[0] == "txn":
            write(lambda w: kv.txn_puts(w, [(k, v, 0) for k, v in op[1]]))
            model.update(op[1])
        else:
            lo, hi = sorted((op[1], op[2]))
            end = hi if hi != lo else b""
            write(lambda w: kv.delete_range(w, rpc_pb2.DeleteRangeRequest(key=lo,
                                                                          range_end=end)))
            for k in [k for k in model if (lo <= k < hi if end else k == lo)]:
                del model[k]

    with backend.begin_read() as txn:
        views = {"core": ReadView(store, txn), "workers": LatestView(backend, txn)}
        for name, view in views.items():
            for k in KEYS:     # every key alone
                want = [(k, model[k])] if k in model else []
                assert _read(kv, view, k, b"")[0] == want, (name, len(k))
            for lo, hi, limit, count_only in ranges:
                end = b"\x00" if hi == b"\x00" else hi
                inside = sorted((k, v) for k, v in model.items()
                                if lo <= k and (end == b"\x00" or k < end))
                kvs, count, more = _read(kv, view, lo, end, limit, count_only)
                assert count == len(inside), (name, "count")
                if not count_only:
                    assert kvs == inside[:limit or None], (name, "kvs")
                    assert more == (0 < limit < len(inside)), (name, "more")


def test_a_long_key_survives_reopening(tmp_path):
    """The workers' index of long keys is rebuilt from the revisions like the rest."""
    path = str(tmp_path / "db")
    backend = Backend(path, map_size=64 << 20)
    store = KVStore(backend)
    kv = KVApplier(store, Lessor(backend, 1))
    long_key = b"k" * 5000
    with backend.begin_write() as txn:
        w = store.write(txn)
        kv.put(w, rpc_pb2.PutRequest(key=long_key, value=b"v"))
        w.end()
    backend.env.close()
    backend = Backend(path, map_size=64 << 20)
    KVStore(backend)
    with backend.begin_read() as txn:
        kvs, count, _ = _read(KVApplier(store, Lessor(backend, 1)), LatestView(backend, txn),
                              b"k", b"l")
    assert kvs == [(long_key, b"v")] and count == 1
