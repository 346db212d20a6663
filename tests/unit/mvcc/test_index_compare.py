"""Comparison test: the compiled B-tree index against its plain-Python twin.

The pattern of etcd-io/raft's quorum/quick_test.go: hypothesis draws one random
sequence of operations (puts and tombstones at increasing revisions, reads at past
revisions, ranges with limits, range_since, keep and compact) and both
implementations must return identical results and end in identical states.  The
compiled tree gets small node sizes too, so that splits and rebuilds happen.

KVCORE_HYPOTHESIS_EXAMPLES scales the number of examples (default 300).
"""
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcore import _ext
from kvcore.mvcc import index_py

revindex = _ext.compiled("revindex")   # a missing build fails, never skips

EXAMPLES = int(os.environ.get("KVCORE_HYPOTHESIS_EXAMPLES", "300"))

_FIXED_KEYS = [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"ab", b"abc", b"b", b"ba",
               b"c", b"\x7f", b"\xff", b"\xff\xff"]
keys = st.one_of(st.sampled_from(_FIXED_KEYS), st.binary(max_size=3))
ends = st.one_of(st.sampled_from([None, b"", b"\x00"]), keys)
revs = st.integers(min_value=0, max_value=60)

ops = st.one_of(
    st.tuples(st.just("put"), keys, st.booleans()),
    st.tuples(st.just("put"), keys, st.booleans()),
    st.tuples(st.just("tombstone"), keys, st.booleans()),
    st.tuples(st.just("put_version"), keys, st.booleans()),
    st.tuples(st.just("get"), keys, revs),
    st.tuples(st.just("revisions"), keys, ends, revs, st.integers(-1, 5)),
    st.tuples(st.just("count"), keys, ends, revs),
    st.tuples(st.just("since"), keys, ends, revs),
    st.tuples(st.just("keep"), revs),
    st.tuples(st.just("compact"), revs),
    st.tuples(st.just("len"),),
)


def _call(fn, *args):
    try:
        return ("ok", fn(*args))
    except (KeyError, ValueError, TypeError) as exc:
        return ("raise", type(exc).__name__)


def run_both(seq, degree):
    a = index_py.TreeIndex()
    b = revindex.TreeIndex(degree=degree)
    main, sub = 0, 0
    for op in seq:
        kind = op[0]
        if kind in ("put", "tombstone", "put_version"):
            _, key, new_txn = op
            if new_txn or main == 0:
                main, sub = main + 1, 0
            else:
                sub += 1
            ra = _call(getattr(a, kind), key, main, sub)
            rb = _call(getattr(b, kind), key, main, sub)
            if kind == "put_version" and ra[0] == "ok":
                # the answer is what a read at the put's revision then sees
                got = a.get(key, main)
                assert ra[1] == (got[2], got[4]), (op, main, sub)
        elif kind == "get":
            ra, rb = _call(a.get, op[1], op[2]), _call(b.get, op[1], op[2])
        elif kind == "revisions":
            ra = _call(a.revisions, *op[1:])
            rb = _call(b.revisions, *op[1:])
        elif kind == "count":
            ra = _call(a.count_revisions, *op[1:])
            rb = _call(b.count_revisions, *op[1:])
        elif kind == "since":
            ra = _call(a.range_since, *op[1:])
            rb = _call(b.range_since, *op[1:])
        elif kind == "keep":
            rev = min(op[1], main)
            ra, rb = _call(a.keep, rev), _call(b.keep, rev)
        elif kind == "compact":
            rev = min(op[1], main)   # etcd never compacts past the current revision
            ra, rb = _call(a.compact, rev), _call(b.compact, rev)
        else:
            ra, rb = len(a), len(b)
        assert ra == rb, (op, main, sub)
    assert len(a) == len(b)
    assert a.dump() == b.dump()
    b._check()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(seq=st.lists(ops, max_size=120), degree=st.sampled_from([2, 3, 4, 32]))
def test_compiled_matches_twin(seq, degree):
    run_both(seq, degree)


@pytest.mark.parametrize("degree", [2, 8, 32])
def test_compiled_matches_twin_large(degree):
    """A long seeded run over thousands of keys, so the tree is several levels deep."""
    rnd = random.Random(degree)
    pool = sorted({bytes(rnd.randrange(97, 101) for _ in range(rnd.randrange(0, 7)))
                   for _ in range(3000)})
    seq = []
    for _ in range(12000):
        r = rnd.random()
        key = rnd.choice(pool)
        if r < 0.45:
            seq.append(("put", key, rnd.random() < 0.7))
        elif r < 0.55:
            seq.append(("put_version", key, rnd.random() < 0.7))
        elif r < 0.7:
            seq.append(("tombstone", key, rnd.random() < 0.7))
        elif r < 0.8:
            seq.append(("get", key, rnd.randrange(0, 12000)))
        elif r < 0.9:
            seq.append(("revisions", key, rnd.choice([None, b"\x00", rnd.choice(pool)]),
                        rnd.randrange(0, 12000), rnd.randrange(-1, 20)))
        elif r < 0.95:
            seq.append(("since", key, rnd.choice([None, b"\x00", rnd.choice(pool)]),
                        rnd.randrange(0, 12000)))
        elif r < 0.999:
            seq.append(("count", key, rnd.choice([None, b"\x00", rnd.choice(pool)]),
                        rnd.randrange(0, 12000)))
        else:
            seq.append(("compact", rnd.randrange(0, 12000)))
    run_both(seq, degree)
