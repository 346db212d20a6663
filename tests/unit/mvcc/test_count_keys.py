"""count_keys (the workers' Range count) against a plain count, on a real LMDB: ranges
inside, around and across the keys, with a chunk small enough that both the range's
walk and the outside walk end first in some cases."""
import lmdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kvcore.mvcc import latest

ALPHABET = [b"", b"\x00", b"a", b"a/", b"a/b", b"b", b"b\xff", b"c", b"\xff"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = lmdb.open(str(tmp_path_factory.mktemp("count")), max_dbs=2, map_size=1 << 24)
    yield e
    e.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.sets(st.binary(min_size=1, max_size=3), max_size=40),
       lo=st.sampled_from(ALPHABET[1:]) | st.binary(min_size=1, max_size=3),
       hi=st.none() | st.sampled_from(ALPHABET[1:]) | st.binary(min_size=1, max_size=3),
       chunk=st.integers(1, 5), alone=st.integers(0, 6))
def test_count_keys_matches_a_plain_count(env, monkeypatch, keys, lo, hi, chunk, alone):
    monkeypatch.setattr(latest, "_CHUNK", chunk)
    monkeypatch.setattr(latest, "_ALONE", alone)
    db = env.open_db(b"t")
    with env.begin(write=True) as txn:
        txn.drop(db, delete=False)
        for k in keys:
            txn.put(k, b"r", db=db)
    with env.begin() as txn:
        want = sum(1 for k in keys if k >= lo and (hi is None or k < hi))
        assert latest.count_keys(txn, db, lo, hi) == want
