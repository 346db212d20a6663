"""A v2 TTL becomes an absolute expiry as etcd 3.4 computes it: Go's int64
nanoseconds (time.Duration(ttl) * time.Second, then Now().Add(..).UnixNano()),
which wrap; a huge TTL gives a time already gone, never one a clock function
refuses (it used to reach the apply as a year past 10^11 and stop the member)."""
from __future__ import annotations

from kvcore.v2store.http import go_expiry, with_expiry
from kvcore.v2store.store import _rfc3339

NOW = 1_800_000_000.25


def test_ordinary_ttls_add_seconds():
    assert go_expiry(NOW, 0) == NOW
    assert go_expiry(NOW, 60) == NOW + 60
    assert with_expiry({"ttl": 5}, NOW)["expire"] == NOW + 5
    assert with_expiry({"ttl": None}, NOW)["expire"] is None


def test_huge_ttls_wrap_as_go_int64():
    # 2^62 s * 1e9 = 2^71 * 1953125 = 0 mod 2^64: the duration wraps to nothing.
    assert abs(go_expiry(NOW, 2 ** 62) - NOW) < 1e-6
    # 2^33 s fits a Duration, but now + 272 years is past 2262: UnixNano wraps
    # to before 1970.
    assert go_expiry(NOW, 2 ** 33) < 0
    # The largest uint64 is -1 as an int64: one second ago.
    assert abs(go_expiry(NOW, 2 ** 64 - 1) - (NOW - 1)) < 1e-6
    for ttl in (2 ** 40, 2 ** 63, 2 ** 64 - 1, 10 ** 19, 9223372036):
        t = go_expiry(NOW, ttl)
        assert -2 ** 63 / 1e9 <= t < 2 ** 63 / 1e9
        _rfc3339(t)    # any wrapped expiry prints


def test_an_expiry_of_exactly_zero_is_permanent():
    # etcd's apply reads Expiration 0 as "no TTL" (here: a wrapped 2^62 s at the epoch).
    assert go_expiry(0.0, 2 ** 62) is None
    assert go_expiry(0.0, 1) == 1.0
