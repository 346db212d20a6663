"""The checker itself: it must accept linearizable histories and reject the rest."""
import math

from kvcore.robust.linearizability import Op, check, check_key


def test_sequential_history_is_linearizable():
    ops = [Op(0, "put", "k", "1", call=0, ret=1), Op(1, "get", "k", result="1", call=2, ret=3),
           Op(0, "delete", "k", call=4, ret=5), Op(1, "get", "k", result=None, call=6, ret=7)]
    assert check_key(ops)


def test_stale_read_after_acknowledged_write_is_caught():
    ops = [Op(0, "put", "k", "1", call=0, ret=1), Op(0, "put", "k", "2", call=2, ret=3),
           Op(1, "get", "k", result="1", call=4, ret=5)]
    assert not check_key(ops)


def test_concurrent_ops_may_take_either_order():
    ops = [Op(0, "put", "k", "1", call=0, ret=10), Op(1, "get", "k", result="1", call=1, ret=2),
           Op(2, "get", "k", result=None, call=1, ret=2)]
    assert check_key(ops)


def test_reads_must_agree_on_one_order():
    # Two writes concurrent with two readers who see them in opposite orders.
    ops = [Op(0, "put", "k", "a", call=0, ret=10), Op(1, "put", "k", "b", call=0, ret=10),
           Op(2, "get", "k", result="a", call=11, ret=12), Op(2, "get", "k", result="b", call=13, ret=14),
           Op(3, "get", "k", result="b", call=11, ret=12), Op(3, "get", "k", result="a", call=13, ret=14)]
    assert not check_key(ops)


def test_unknown_outcome_write_may_or_may_not_have_happened():
    seen = [Op(0, "put", "k", "1", call=0, ret=math.inf), Op(1, "get", "k", result="1", call=5, ret=6)]
    unseen = [Op(0, "put", "k", "1", call=0, ret=math.inf), Op(1, "get", "k", result=None, call=5, ret=6)]
    assert check_key(seen) and check_key(unseen)
    # ...but not both: once observed, it cannot disappear.
    flip = seen + [Op(1, "get", "k", result=None, call=7, ret=8)]
    assert not check_key(flip)


def test_cas_semantics():
    ok = [Op(0, "put", "k", "1", call=0, ret=1), Op(1, "cas", "k", ("1", "2"), True, call=2, ret=3),
          Op(2, "get", "k", result="2", call=4, ret=5)]
    bad = [Op(0, "put", "k", "1", call=0, ret=1), Op(1, "cas", "k", ("1", "2"), False, call=2, ret=3)]
    assert check_key(ok) and not check_key(bad)


def test_check_reports_keys():
    ops = [Op(0, "put", "a", "1", call=0, ret=1), Op(0, "get", "a", result="0", call=2, ret=3),
           Op(0, "put", "b", "1", call=0, ret=1), Op(0, "get", "b", result="1", call=2, ret=3)]
    assert check(ops) == ["a"]


def test_pruning_keeps_verdicts():
    # An unobserved unknown write is dropped; an observed one stays and still binds.
    ops = [Op(0, "put", "k", "x", call=0, ret=math.inf), Op(1, "put", "k", "1", call=1, ret=2),
           Op(1, "get", "k", result="1", call=3, ret=4)]
    assert check(ops) == []
    stale = [Op(0, "put", "k", "x", call=0, ret=math.inf), Op(1, "get", "k", result="x", call=1, ret=2),
             Op(1, "put", "k", "1", call=3, ret=4), Op(1, "get", "k", result="x", call=5, ret=6)]
    assert check(stale) == ["k"]


def test_pruning_keeps_an_unobserved_write_a_failed_cas_depends_on():
    """kvcore-robust seed 7, round 428 (key k1): c2's CAS c1-0 -> c2-4 timed out and
    nobody read c2-4, but c3's CAS expecting c1-0 failed after it (the watch shows
    c2-4 at the next revision). Dropping the unknown CAS made the failed one
    inexplicable: a false "not linearizable"."""
    inf = math.inf
    ops = [Op(1, "put", "k1", "c1-0", call=0.223, ret=0.234),
           Op(3, "get", "k1", result="c1-0", call=0.308, ret=0.318),
           Op(2, "cas", "k1", ("c1-0", "c2-4"), None, call=0.492, ret=inf),
           Op(3, "cas", "k1", ("c1-0", "c3-5"), False, call=0.595, ret=0.627),
           Op(3, "put", "k1", "c3-10", call=0.977, ret=1.007),
           Op(2, "get", "k1", result="c3-10", call=0.977, ret=1.015),
           Op(1, "put", "k1", "c1-34", call=1.899, ret=inf),
           Op(3, "put", "k1", "c3-36", call=2.025, ret=2.042),
           Op(3, "get", "k1", result="c3-36", call=2.05, ret=2.06)]
    assert check(ops) == []
    # Still binding: without the unknown CAS the failed one has no explanation.
    assert check(ops[:2] + ops[3:]) == ["k1"]
