"""Property test: the MVCC store (through etcd's KV applier) against a simple model.

Random put / delete-range / txn / compact sequences; after each step, reads at
random revisions (and ranges) must agree with the model's history, including the
compacted and future-revision errors.
"""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kvcore.api import kv_pb2, rpc_pb2
from kvcore.api.errors import EtcdError
from kvcore.engine.base import GrpcError
from kvcore.lease.lessor import Lessor
from kvcore.mvcc.store import KVStore, ReadView
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.latest import LatestView
from kvcore.storage.backend import Backend

KEYS = [b"a", b"ab", b"b", b"ba", b"c", b"d\x00", b"d\xff"]
key_st = st.sampled_from(KEYS)
val_st = st.binary(max_size=4)


class Model:
    """history[rev] = {key: (value, create, mod, version)}"""

    def __init__(self):
        self.history = {1: {}}
        self.rev = 1
        self.compacted = -1

    def apply(self, changes):
        """changes: list of ('put', k, v) / ('del', k) on the state at self.rev."""
        state = dict(self.history[self.rev])
        changed = False
        for c in changes:
            if c[0] == "put":
                _, k, v = c
                old = state.get(k)
                if old:
                    state[k] = (v, old[1], self.rev + 1, old[3] + 1)
                else:
                    state[k] = (v, self.rev + 1, self.rev + 1, 1)
                changed = True
            else:
                for k in [k for k in state if c[1] <= k < c[2]]:
                    del state[k]
                    changed = True
        if changed:
            self.rev += 1
            self.history[self.rev] = state

    def read(self, rev, lo, hi):
        if rev <= 0:
            rev = self.rev
        if rev > self.rev:
            return "future"
        if rev < self.compacted:
            return "compacted"
        return sorted((k, v) for k, v in self.history[rev].items() if lo <= k < hi)


def _end(lo, hi):
    return hi


op_st = st.one_of(
    st.tuples(st.just("put"), key_st, val_st),
    st.tuples(st.just("del"), key_st, key_st),
    st.tuples(st.just("txn"), key_st, st.integers(0, 3),
              st.lists(st.tuples(key_st, val_st), max_size=3, unique_by=lambda t: t[0]),
              st.lists(st.tuples(key_st, val_st), max_size=3, unique_by=lambda t: t[0])),
    st.tuples(st.just("compact"), st.integers(0, 40)),
    st.tuples(st.just("read"), st.integers(-1, 45), key_st, key_st),
)


@settings(max_examples=int(__import__("os").environ.get("KVCORE_HYPOTHESIS_EXAMPLES", 150)),
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, min_size=1, max_size=40))
def test_store_agrees_with_model(tmp_path_factory, ops):
    d = tmp_path_factory.mktemp("mvcc")
    backend = Backend(str(d / "db"), map_size=64 << 20)
    store = KVStore(backend)
    kv = KVApplier(store, Lessor(backend, 1))
    model = Model()

    def write(fn):
        with backend.begin_write() as txn:
            w = store.write(txn)
            out = fn(w)
            w.end()
        return out

    def check_reads():
        # Every revision, whole key space, plus the current revision per key.
        for rev in range(max(1, model.compacted - 1), model.rev + 2):
            want = model.read(rev, b"\x00", b"\xff\xff")
            with backend.begin_read() as txn:
                r = rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)
                try:
                    _, body = kv.range(ReadView(store, txn), r)
                    got = [(x.key, (x.value, x.create_revision, x.mod_revision, x.version))
                           for x in rpc_pb2.RangeResponse.FromString(body).kvs]
                except GrpcError as e:
                    got = {EtcdError.COMPACTED[1]: "compacted",
                           EtcdError.FUTURE_REV[1]: "future"}[e.message]
            assert got == want, f"revision {rev}"
        # The workers' view (the ``latest`` database) agrees at the current revision.
        with backend.begin_read() as txn:
            r = rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00")
            _, body = kv.range(LatestView(backend, txn), r)
        got = [(x.key, (x.value, x.create_revision, x.mod_revision, x.version))
               for x in rpc_pb2.RangeResponse.FromString(body).kvs]
        assert got == model.read(0, b"\x00", b"\xff\xff"), "latest"

    try:
        for op in ops:
            if op[0] == "put":
                write(lambda w: kv.put(w, rpc_pb2.PutRequest(key=op[1], value=op[2])))
                model.apply([op])
            elif op[0] == "del":
                lo, hi = sorted((op[1], op[2]))
                end = hi if hi != lo else b""
                write(lambda w: kv.delete_range(w, rpc_pb2.DeleteRangeRequest(key=lo, range_end=end)))
                model.apply([("del", lo, hi if end else lo + b"\x00")])
            elif op[0] == "txn":
                _, ck, ver, then, els = op
                cur = model.history[model.rev].get(ck)
                ok = (cur[3] if cur else 0) == ver
                req = rpc_pb2.TxnRequest(
                    compare=[rpc_pb2.Compare(key=ck, target=rpc_pb2.Compare.VERSION,
                                             result=rpc_pb2.Compare.EQUAL, version=ver)],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v))
                             for k, v in then],
                    failure=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v))
                             for k, v in els])
                _, body = write(lambda w: kv.txn(w, req))
                assert rpc_pb2.TxnResponse.FromString(body).succeeded == ok
                model.apply([("put", k, v) for k, v in (then if ok else els)])
            elif op[0] == "compact":
                rev = op[1]
                with backend.begin_write() as txn:
                    try:
                        store.compact(txn, rev)
                        assert model.compacted < rev <= model.rev
                        model.compacted = rev
                    except Exception as e:
                        assert rev <= model.compacted or rev > model.rev, (rev, e)
            else:
                _, rev, a, b = op
                lo, hi = sorted((a, b))
                want = model.read(rev, lo, hi)
                with backend.begin_read() as txn:
                    r = rpc_pb2.RangeRequest(key=lo, range_end=hi, revision=rev)
                    try:
                        _, body = kv.range(ReadView(store, txn), r)
                        resp = rpc_pb2.RangeResponse.FromString(body)
                        got = [(x.key, (x.value, x.create_revision, x.mod_revision, x.version))
                               for x in resp.kvs] if hi != lo else []
                        if hi != lo:
                            assert resp.count == len(got)
                    except GrpcError as e:
                        got = "compacted" if "compacted" in e.message else "future"
                if hi == lo and isinstance(want, list):
                    want = []
                assert got == want
        check_reads()
        # A restart rebuilds the same state from LMDB alone.
        backend.close()
        backend = Backend(str(d / "db"), map_size=64 << 20)
        store = KVStore(backend)
        kv = KVApplier(store, Lessor(backend, 1))
        assert store.current_rev == model.rev
        check_reads()
    finally:
        backend.env.close()
