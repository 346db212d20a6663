"""The space quota checked before a write is proposed (etcd's quota; the alarm
store and why the size is the pages' high-water mark: kvcore/server/alarms.py)."""
from __future__ import annotations

import logging

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.server.entry import OP_ALARM

log = logging.getLogger("kvcore.core")


class Quota:
    def __init__(self, ctx):
        self.ctx = ctx
        self.used = 0   # etcd's backend Size; the core updates it after each apply

    def check(self, cost: int):
        """None when a write of ``cost`` bytes fits; over the quota, the refusal: at
        once if this member's NOSPACE alarm is already raised, else a future that
        fails once the alarm it proposes is applied (etcd waits for it too, so
        'alarm list' right after shows it)."""
        ctx = self.ctx
        if self.used + cost <= ctx.cfg.quota_backend_bytes:
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
