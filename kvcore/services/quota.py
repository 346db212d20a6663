"""The space quota checked before a write is proposed (etcd's quota; the alarm
store and why the size is the pages' high-water mark: kvcore/server/alarms.py).

Beyond etcd: the same refusal (NOSPACE alarm, "database space exceeded") when the
disk holding the data or the WAL runs out of room, so a full disk refuses writes
before one is proposed instead of failing a WAL or backend write after it was
(which can only stop the member). Free space is read at most every 0.1 s.
"""
from __future__ import annotations

import logging
import os
import time

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.server.entry import OP_ALARM

log = logging.getLogger("kvcore.core")

DISK_RESERVE = 8 << 20    # bytes kept free: WAL records, LMDB's copied pages, a snapshot


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Quota:
    def __init__(self, ctx):
        self.ctx = ctx
        self.used = 0   # etcd's backend Size; the core updates it after each apply
        self._free, self._free_at, self._low = 0, -1.0, False
        cfg = ctx.cfg
        self._dirs = [cfg.data_dir] + ([cfg.wal_dir] if cfg.wal_dir else [])

    def disk_has_room(self, cost: int) -> bool:
        now = time.monotonic()
        if now - self._free_at > 0.1:
            self._free_at = now
            try:
                free = min((free_bytes(d), d) for d in self._dirs)
            except OSError:
                return True   # not measurable here: the write itself will tell
            low = free[0] < DISK_RESERVE
            if low and not self._low:     # once per episode, not per write
                log.warning("disk nearly full: %d bytes free under %s; refusing writes "
                            "(NOSPACE) until space is freed and the alarm disarmed", *free)
            # The episode lasts while the disk stays under the reserve plus a margin, so
            # a write refused on the running estimate does not log again each reading.
            self._low = low or (self._low and free[0] < DISK_RESERVE + (4 << 20))
            self._free = free[0]
        if self._free < DISK_RESERVE + 2 * cost:
            if not self._low:             # once per episode, not per write
                self._low = True
                log.warning("disk nearly full: about %d bytes free under %s; refusing "
                            "writes (NOSPACE) until space is freed and the alarm disarmed",
                            self._free, self._dirs[0])
            return False
        # Until the next reading, count what this write will take (WAL + backend), so a
        # burst inside one 0.1 s window cannot run past the reserve unseen.
        self._free -= 2 * cost
        return True

    def check(self, cost: int):
        """None when a write of ``cost`` bytes fits; over the quota, the refusal: at
        once if this member's NOSPACE alarm is already raised, else a future that
        fails once the alarm it proposes is applied (etcd waits for it too, so
        'alarm list' right after shows it)."""
        ctx = self.ctx
        if self.used + cost <= ctx.cfg.quota_backend_bytes and self.disk_has_room(cost):
            return None
        if (ctx.member_id, rpc_pb2.NOSPACE) in ctx.alarms.active or not ctx.raft.lead:
            raise etcd_error(EtcdError.NO_SPACE)
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE,
                                   memberID=ctx.member_id, alarm=rpc_pb2.NOSPACE)
        refused = ctx.loop.create_future()

        def raised(f):
            if not f.cancelled() and f.exception() is not None:
                log.warning("raising the NOSPACE alarm failed: %s", f.exception())
            if not refused.done():
                refused.set_exception(etcd_error(EtcdError.NO_SPACE))
        ctx.propose(OP_ALARM, req.SerializeToString()).add_done_callback(raised)
        return refused
