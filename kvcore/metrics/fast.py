"""Hot-path friendly metrics: updating one is a plain integer/list operation; the
Prometheus family is built only when scraped."""
from __future__ import annotations

from bisect import bisect_left

from prometheus_client.core import HistogramMetricFamily


def exponential(start: float, factor: float, count: int) -> list[float]:
    """prometheus.ExponentialBuckets."""
    return [start * factor ** i for i in range(count)]


class FastHistogram:
    """A histogram without locks: ``observe`` is one bisect and two additions.
    Labelled series live in ``series`` (label values tuple -> [counts, sum])."""

    __slots__ = ("name", "doc", "labels", "bounds", "series")

    def __init__(self, name: str, doc: str, bounds, labels: tuple = ()):
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self.bounds = list(bounds)
        self.series: dict[tuple, list] = {}
        if not labels:
            self.series[()] = [[0] * (len(self.bounds) + 1), 0.0]

    def observe(self, value: float, label_values: tuple = ()) -> None:
        s = self.series.get(label_values)
        if s is None:
            s = self.series[label_values] = [[0] * (len(self.bounds) + 1), 0.0]
        s[0][bisect_left(self.bounds, value)] += 1
        s[1] += value

    def count(self, label_values: tuple = ()) -> int:
        s = self.series.get(label_values)
        return sum(s[0]) if s else 0

    def family(self) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for lv, (counts, total) in sorted(self.series.items()):
            add_histogram(fam, list(lv), self.bounds, counts, total)
        return fam


def add_histogram(fam, label_values: list, bounds, counts, total: float) -> None:
    """counts[i]: observations in bucket i (the last one: above every bound)."""
    acc = 0
    buckets = []
    for b, c in zip(bounds, counts):
        acc += c
        buckets.append((_le(b), acc))
    acc += counts[-1]
    buckets.append(("+Inf", acc))
    fam.add_metric(label_values, buckets, total)


def _le(b: float) -> str:
    return repr(float(b)) if b != int(b) else f"{b:g}" if b < 1e6 else repr(float(b))
