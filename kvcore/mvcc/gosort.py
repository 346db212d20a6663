"""etcd's order for a sorted Range whose sort target has ties.

etcd 3.5.1 sorts a Range with Go's sort.Sort (built with go1.16.3), which is not
stable: keys with the same version, create or mod revision, or value come out in an
order that depends on the quicksort's pivots, and a ``limit`` then keeps a different
subset than a stable sort would. Clients see that order (``etcdctl get --prefix
--sort-by=VERSION --limit 2``), so it is reproduced here: the same pivot choice
(median of three, Tukey's ninther above 40 items), the same partition with its guard
against many duplicates, heapsort past the depth limit and a gap-6 pass plus
insertion sort at 12 items or fewer. Without ties every correct sort agrees and the
builtin one is used.
"""
from __future__ import annotations


def go_sort(items: list, key, reverse: bool = False) -> list:
    """``items`` in the order go1.16 ``sort.Sort`` (of ``sort.Reverse`` when
    ``reverse``) leaves them, comparing ``key(item)`` with ``<``."""
    keys = [key(x) for x in items]
    distinct = sorted(set(keys))
    if len(distinct) == len(keys):
        return sorted(items, key=key, reverse=reverse)
    rank = {k: i for i, k in enumerate(distinct)}
    sign = -1 if reverse else 1     # Reverse's Less(i, j) is Less(j, i)
    data = _Data([sign * rank[k] for k in keys])
    n = len(items)
    _quick_sort(data, 0, n, _max_depth(n))
    return [items[i] for i in data.pos]


class _Data:
    """sort.Interface over ranks; ``pos`` follows every swap to the items."""
    __slots__ = ("r", "pos")

    def __init__(self, ranks: list):
        self.r = ranks
        self.pos = list(range(len(ranks)))

    def less(self, i: int, j: int) -> bool:
        return self.r[i] < self.r[j]

    def swap(self, i: int, j: int) -> None:
        r, p = self.r, self.pos
        r[i], r[j] = r[j], r[i]
        p[i], p[j] = p[j], p[i]


def _max_depth(n: int) -> int:
    depth = 0
    while n > 0:
        depth += 1
        n >>= 1
    return depth * 2


def _insertion_sort(d: _Data, a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and d.less(j, j - 1):
            d.swap(j, j - 1)
            j -= 1


def _sift_down(d: _Data, lo: int, hi: int, first: int) -> None:
    root = lo
    while True:
        child = 2 * root + 1
        if child >= hi:
            return
        if child + 1 < hi and d.less(first + child, first + child + 1):
            child += 1
        if not d.less(first + root, first + child):
            return
        d.swap(first + root, first + child)
        root = child


def _heap_sort(d: _Data, a: int, b: int) -> None:
    first, hi = a, b - a
    for i in range((hi - 1) // 2, -1, -1):
        _sift_down(d, i, hi, first)
    for i in range(hi - 1, -1, -1):
        d.swap(first, first + i)
        _sift_down(d, 0, i, first)


def _median_of_three(d: _Data, m1: int, m0: int, m2: int) -> None:
    """Leaves the median of the three at m1."""
    if d.less(m1, m0):
        d.swap(m1, m0)
    if d.less(m2, m1):
        d.swap(m2, m1)
        if d.less(m1, m0):
            d.swap(m1, m0)


def _do_pivot(d: _Data, lo: int, hi: int) -> tuple[int, int]:
    m = (lo + hi) >> 1
    if hi - lo > 40:
        s = (hi - lo) // 8
        _median_of_three(d, lo, lo + s, lo + 2 * s)
        _median_of_three(d, m, m - s, m + s)
        _median_of_three(d, hi - 1, hi - 1 - s, hi - 1 - 2 * s)
    _median_of_three(d, lo, m, hi - 1)
    pivot = lo
    a, c = lo + 1, hi - 1
    while a < c and d.less(a, pivot):
        a += 1
    b = a
    while True:
        while b < c and not d.less(pivot, b):
            b += 1
        while b < c and d.less(pivot, c - 1):
            c -= 1
        if b >= c:
            break
        d.swap(b, c - 1)
        b += 1
        c -= 1
    protect = hi - c < 5
    if not protect and hi - c < (hi - lo) // 4:
        dups = 0
        if not d.less(pivot, hi - 1):
            d.swap(c, hi - 1)
            c += 1
            dups += 1
        if not d.less(b - 1, pivot):
            b -= 1
            dups += 1
        if not d.less(m, pivot):
            d.swap(m, b - 1)
            b -= 1
            dups += 1
        protect = dups > 1
    if protect:
        while True:
            while a < b and not d.less(b - 1, pivot):
                b -= 1
            while a < b and d.less(a, pivot):
                a += 1
            if a >= b:
                break
            d.swap(a, b - 1)
            a += 1
            b -= 1
    d.swap(pivot, b - 1)
    return b - 1, c


def _quick_sort(d: _Data, a: int, b: int, depth: int) -> None:
    while b - a > 12:
        if depth == 0:
            _heap_sort(d, a, b)
            return
        depth -= 1
        mlo, mhi = _do_pivot(d, a, b)
        if mlo - a < b - mhi:
            _quick_sort(d, a, mlo, depth)
            a = mhi
        else:
            _quick_sort(d, mhi, b, depth)
            b = mlo
    if b - a > 1:
        for i in range(a + 6, b):
            if d.less(i, i - 6):
                d.swap(i, i - 6)
        _insertion_sort(d, a, b)
