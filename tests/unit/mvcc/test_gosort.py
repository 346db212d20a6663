"""kvcore/mvcc/gosort.py: a correct sort whatever the ties (its tie order against etcd
3.5.1 itself is tests/fuzz/test_v3_diff.py::test_sorted_range_ties_in_etcds_order)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore.mvcc.gosort import go_sort


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=200), st.booleans())
def test_sorted_permutation(keys, reverse):
    items = list(enumerate(keys))
    out = go_sort(items, lambda x: x[1], reverse)
    assert sorted(out) == sorted(items)
    assert [k for _, k in out] == sorted(keys, reverse=reverse)


def test_ties_not_stable():
    """Go's quicksort moves equal items: 13 equal keys do not keep their order."""
    items = [(i, 0) for i in range(13)] + [(13, -1)]
    assert [i for i, _ in go_sort(items, lambda x: x[1])] != [13] + list(range(13))
