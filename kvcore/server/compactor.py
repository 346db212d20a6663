"""Auto-compaction (--auto-compaction-mode / --auto-compaction-retention), with the
cadence of etcd's server/etcdserver/api/v3compactor.

periodic, retention P: every P/10 (at most 6 min) the current revision is recorded;
once P has passed since the last success, the revision recorded P ago is compacted,
then every min(P, 1h) after that. revision, retention R: every 5 minutes, compact
to (current revision - R) unless that is <= 0 or what was compacted last time.
Only the leader compacts (etcd pauses the compactor on followers); a compaction that
finds the revision already compacted counts as done, as in etcd.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Optional

from kvcore.logs import fields

log = logging.getLogger("kvcore.compactor")

HOUR = 3600.0
RETRY_DIVISOR = 10
REVISION_INTERVAL = 300.0     # etcd's revInterval: 5 minutes

RevGetter = Callable[[], int]
Compact = Callable[[int], Awaitable[None]]


def _compacted(e: BaseException) -> bool:
    return "required revision has been compacted" in str(e)


class _Base:
    def __init__(self, rev: RevGetter, compact: Compact, is_leader: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable] = asyncio.sleep):
        self.rev, self.compact, self.is_leader = rev, compact, is_leader
        self.clock, self.sleep = clock, sleep
        self.compactions: list[int] = []    # revisions compacted (for tests and logs)
        self._task: Optional[asyncio.Task] = None

    def start(self) -> "_Base":
        self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _try(self, rev: int, **kw) -> bool:
        started = self.clock()
        log.info(f"starting auto {self.mode} compaction", extra=fields(revision=rev, **kw))
        try:
            await self.compact(rev)
        except Exception as e:   # noqa: BLE001 - logged and retried as etcd does
            if not _compacted(e):
                log.warning(f"failed auto {self.mode} compaction",
                            extra=fields(revision=rev, error=str(e), **kw))
                return False
        self.compactions.append(rev)
        log.info(f"completed auto {self.mode} compaction",
                 extra=fields(revision=rev, took=f"{self.clock() - started:.3f}s", **kw))
        return True


class Periodic(_Base):
    mode = "periodic"

    def __init__(self, period: float, *args, **kw):
        super().__init__(*args, **kw)
        self.period = period
        self.compact_interval = min(period, HOUR)
        self.retry_interval = self.compact_interval / RETRY_DIVISOR
        self.retentions = int(period / self.retry_interval) + 1

    async def run(self) -> None:
        revs: list[int] = []
        last_success = self.clock()
        base = self.period
        period = f"{self.period:g}s"
        while True:
            revs.append(self.rev())
            if len(revs) > self.retentions:
                revs.pop(0)          # revs[0] is the revision of one period ago
            await self.sleep(self.retry_interval)
            if not self.is_leader():
                continue
            if self.clock() - last_success < base:
                continue
            base = self.compact_interval
            if await self._try(revs[0], compact_period=period):
                last_success = self.clock()


class Revision(_Base):
    mode = "revision"

    def __init__(self, retention: int, *args, interval: float = REVISION_INTERVAL, **kw):
        super().__init__(*args, **kw)
        self.retention = retention
        self.interval = interval

    async def run(self) -> None:
        prev = 0
        while True:
            await self.sleep(self.interval)
            if not self.is_leader():
                continue
            rev = self.rev() - self.retention
            if rev <= 0 or rev == prev:
                continue
            if await self._try(rev, revision_compaction_retention=self.retention):
                prev = rev


def from_config(cfg, rev: RevGetter, compact: Compact,
                is_leader: Callable[[], bool]) -> Optional[_Base]:
    """The compactor the flags ask for (None when retention is 0), not yet started."""
    if cfg.auto_compaction_mode == "revision" and cfg.auto_compaction_revisions > 0:
        return Revision(cfg.auto_compaction_revisions, rev, compact, is_leader)
    if cfg.auto_compaction_mode == "periodic" and cfg.auto_compaction_period > 0:
        return Periodic(cfg.auto_compaction_period, rev, compact, is_leader)
    return None
