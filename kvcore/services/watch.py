"""The Watch service: opens client watch streams on the core's watch hub
(kvcore/mvcc/watch.py) and sends progress notifications. The hub itself is fed by
the core's apply loop; watchers that fall behind catch up through
``ctx.schedule_catch_up``."""
from __future__ import annotations

import asyncio

from kvcore.mvcc.watch import WATCH_WINDOW, WatchStream

WATCH = "/etcdserverpb.Watch/Watch"


class WatchService:
    def __init__(self, ctx):
        self.ctx = ctx

    def register(self, reg) -> None:
        reg.stream(WATCH, self.open)
        reg.timer(self._progress_loop)

    def open(self, out) -> WatchStream:
        ctx = self.ctx
        hub = ctx.watch_hub
        if hub.wake_later is None:     # a stream that fell behind resumes on a timer
            def lag_timer() -> None:
                left = hub.lag_left()
                if left > 0:    # fired early by the loop's clock (see lag_left)
                    ctx.loop.call_later(left + 0.001, lag_timer)
                ctx.schedule_catch_up()
            hub.wake_later = lambda delay: ctx.loop.call_later(delay, lag_timer)
        widen = getattr(out, "widen", None)
        if widen is not None:
            widen(WATCH_WINDOW)
        ws = WatchStream(hub, out)
        out.on_credit = ctx.schedule_catch_up
        return ws

    async def _progress_loop(self) -> None:
        interval = self.ctx.cfg.experimental_watch_progress_notify_interval
        while True:
            await asyncio.sleep(interval)
            self.ctx.watch_hub.progress()


def register(ctx, reg) -> WatchService:
    s = WatchService(ctx)
    s.register(reg)
    return s
