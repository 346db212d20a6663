"""Histogram statistics against numpy on known samples (no timing involved)."""
import numpy as np
import pytest

from bench import stats


SAMPLES = {
    "uniform": np.arange(1, 100_001, dtype=np.int64) * 997,          # 997 ns .. ~100 ms
    "lognormal": np.random.default_rng(7).lognormal(13, 1.2, 50_000).astype(np.int64) + 1,
    "bimodal": np.concatenate([np.full(9_000, 250_000), np.full(1_000, 40_000_000)]).astype(np.int64),
    "tiny": np.array([5, 1, 3, 2, 4], dtype=np.int64),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bulk_record_equals_record_value(name):
    x = SAMPLES[name]
    bulk = stats.histogram_of(x)
    one = stats.new_histogram()
    for v in x.tolist():
        one.record_value(v)
    assert list(bulk.counts) == list(one.counts)
    assert bulk.get_total_count() == one.get_total_count() == len(x)
    assert bulk.get_min_value() == one.get_min_value()
    assert bulk.get_max_value() == one.get_max_value()


def exact_percentile(x, p):
    """HdrHistogram's definition: the value at rank round(p% of n) of the sorted samples
    (numpy's inverted_cdf with the rank rounded instead of ceiled)."""
    rank = max(1, int(p / 100.0 * len(x) + 0.5))
    return np.sort(x)[rank - 1]


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("p", [50.0, 90.0, 99.0, 99.9])
def test_percentiles_match_numpy(name, p):
    x = SAMPLES[name]
    h = stats.histogram_of(x)
    exact = exact_percentile(x, p)
    # same as numpy up to one rank
    lo = np.percentile(x, p, method="lower")
    hi = np.percentile(x, p, method="higher")
    assert np.sort(x)[max(0, np.searchsorted(np.sort(x), lo) - 1)] <= exact <= hi
    got = h.get_value_at_percentile(p)
    # 3 significant digits: the reported value is the top of the sample's bucket
    assert exact <= got <= exact * (1 + 1e-3) + 1


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_summary_against_numpy(name):
    x = SAMPLES[name]
    s = stats.summary(stats.histogram_of(x))
    assert s["count"] == len(x)
    assert s["min_ms"] == pytest.approx(x.min() / 1e6, rel=1e-3, abs=1e-6)
    assert s["max_ms"] == pytest.approx(x.max() / 1e6, rel=1e-3, abs=1e-6)
    assert s["avg_ms"] == pytest.approx(x.mean() / 1e6, rel=2e-3, abs=1e-6)
    assert s["stddev_ms"] == pytest.approx(x.std() / 1e6, rel=1e-2, abs=1e-5)
    for p in stats.PERCENTILES:
        exact = exact_percentile(x, p) / 1e6
        assert exact * (1 - 1e-9) <= s[f"p{p:g}_ms"] <= exact * (1 + 1e-3) + 1e-6


def test_merge_of_encoded_parts_equals_whole():
    x = SAMPLES["lognormal"]
    parts = np.array_split(x, 3)
    merged = stats.merge(stats.encode(stats.histogram_of(p)) for p in parts)
    whole = stats.histogram_of(x)
    assert list(merged.counts) == list(whole.counts)
    assert merged.get_total_count() == len(x)
    for p in stats.PERCENTILES:
        assert merged.get_value_at_percentile(p) == whole.get_value_at_percentile(p)


def test_out_of_range_and_empty():
    h = stats.new_histogram()
    assert stats.record_many(h, []) == 0
    assert stats.record_many(h, [-5, 1 << 60]) == 0
    assert stats.summary(h) == {"count": 0}
    assert stats.record_many(h, [10, -1, 20]) == 2
    assert h.get_total_count() == 2


def test_median_and_spread():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, None, 2, 3]) == 2.5
    assert stats.median([]) is None
    assert stats.spread([90, 100, 110]) == pytest.approx(0.2)
    assert stats.spread([5]) is None
