"""Auto-compaction cadence, on a fake clock (etcd's v3compactor rules)."""
import asyncio

import pytest

from kvcore.server import compactor


class FakeTime:
    """A clock that only moves when the compactor sleeps."""

    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    async def sleep(self, s):
        self.now += s
        await asyncio.sleep(0)


def _run(c, until):
    async def go():
        task = asyncio.get_running_loop().create_task(c.run())
        while c.clock() < until:
            await asyncio.sleep(0)
        task.cancel()
    asyncio.run(go())


def test_periodic_compacts_the_revision_of_one_period_ago_every_period():
    t = FakeTime()
    calls = []

    async def compact(rev):
        calls.append((round(t.now, 3), rev))

    # one revision per second of fake time
    c = compactor.Periodic(10.0, lambda: int(t.now) + 1, compact, lambda: True,
                           clock=t.clock, sleep=t.sleep)
    assert (c.retry_interval, c.retentions) == (1.0, 11)
    _run(c, 31)
    assert calls[0] == (10.0, 1)                 # first after one period: rev of t=0
    assert [r for _, r in calls[1:3]] == [10, 20]
    assert [round(at) for at, _ in calls[:3]] == [10, 20, 30]


def test_periodic_over_an_hour_compacts_hourly_with_six_minute_samples():
    c = compactor.Periodic(5 * 3600.0, lambda: 1, None, lambda: True)
    assert (c.compact_interval, c.retry_interval, c.retentions) == (3600.0, 360.0, 51)


def test_periodic_retries_after_a_failure_and_counts_compacted_as_done():
    t = FakeTime()
    outcomes = [RuntimeError("etcdserver: no leader"),
                RuntimeError("etcdserver: mvcc: required revision has been compacted"), None]
    calls = []

    async def compact(rev):
        calls.append(t.now)
        e = outcomes.pop(0) if outcomes else None
        if e:
            raise e

    c = compactor.Periodic(2.0, lambda: 5, compact, lambda: True, clock=t.clock,
                           sleep=t.sleep)
    _run(c, 6.5)
    # the failure is retried one retry interval (P/10) later; "already compacted"
    # counts as a success, so the next try waits a full compaction interval
    assert 1.9 < calls[0] < 2.3
    assert round(calls[1] - calls[0], 1) == 0.2 and round(calls[2] - calls[1], 1) == 2.0


def test_followers_do_not_compact():
    t = FakeTime()
    calls = []

    async def compact(rev):
        calls.append(rev)

    c = compactor.Periodic(1.0, lambda: 7, compact, lambda: False, clock=t.clock,
                           sleep=t.sleep)
    _run(c, 5)
    assert calls == []


def test_revision_mode_every_five_minutes_keeps_retention_revisions():
    t = FakeTime()
    reads = [3, 100, 100, 250]          # the revision at each 5-minute check
    calls = []

    async def compact(r):
        calls.append((t.now, r))

    c = compactor.Revision(5, lambda: reads.pop(0) if reads else 250, compact,
                           lambda: True, clock=t.clock, sleep=t.sleep)
    _run(c, 1250)
    # 3-5 <= 0: skipped; 95; 95 again: skipped; 245
    assert calls == [(600.0, 95), (1200.0, 245)]


@pytest.mark.parametrize("argv, kind, value", [
    (["--auto-compaction-retention=2s"], compactor.Periodic, 2.0),
    (["--auto-compaction-retention=1"], compactor.Periodic, 3600.0),
    (["--auto-compaction-mode=revision", "--auto-compaction-retention=1000"],
     compactor.Revision, 1000),
])
def test_from_config(argv, kind, value):
    from kvcore.config import parse
    c = compactor.from_config(parse(argv, env={}), lambda: 1, None, lambda: True)
    assert isinstance(c, kind)
    assert (c.period if kind is compactor.Periodic else c.retention) == value


def test_no_compactor_when_retention_is_zero():
    from kvcore.config import parse
    assert compactor.from_config(parse([], env={}), lambda: 1, None, lambda: True) is None
