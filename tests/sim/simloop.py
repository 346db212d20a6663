"""Virtual time for the driver simulator (driversim.py): the asyncio loop methods the
production Raft driver uses (time, call_soon, call_later, create_future) over one
event queue shared by every member. One heartbeat is one time unit; events run in
(time, order of scheduling) order, so a seed replays exactly. A crashed member's
pending callbacks die with it (``NodeLoop.alive``).
"""
from __future__ import annotations

import heapq

class _Handle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimFuture:
    """The part of asyncio.Future the driver and its callers use; callbacks run at
    once (the strictest timing for a read: the state is read when it resolves)."""

    __slots__ = ("_state", "_value", "_cbs")

    def __init__(self) -> None:
        self._state = 0          # 0 pending, 1 result, 2 exception
        self._value = None
        self._cbs: list = []

    def done(self) -> bool:
        return self._state != 0

    def _settle(self, state: int, value) -> None:
        if self._state:
            raise RuntimeError("future already done")
        self._state, self._value = state, value
        cbs, self._cbs = self._cbs, []
        for cb in cbs:
            cb(self)

    def set_result(self, value) -> None:
        self._settle(1, value)

    def set_exception(self, exc) -> None:
        self._settle(2, exc)

    def result(self):
        if self._state == 2:
            raise self._value
        return self._value

    def exception(self):
        return self._value if self._state == 2 else None

    def add_done_callback(self, cb) -> None:
        if self._state:
            cb(self)
        else:
            self._cbs.append(cb)


class SimLoop:
    """Virtual time: events run in (time, order of scheduling) order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._q: list = []
        self._seq = 0

    def call_at(self, when: float, fn, *args) -> _Handle:
        h = _Handle()
        self._seq += 1
        heapq.heappush(self._q, (when, self._seq, h, fn, args))
        return h

    def run_until(self, t: float) -> None:
        q = self._q
        while q and q[0][0] <= t:
            when, _, h, fn, args = heapq.heappop(q)
            if when > self.now:
                self.now = when
            if not h.cancelled:
                fn(*args)
        self.now = t


class NodeLoop:
    """The loop one incarnation of a member sees: its callbacks die with it."""

    __slots__ = ("sim", "alive")

    def __init__(self, sim: SimLoop) -> None:
        self.sim = sim
        self.alive = True

    def time(self) -> float:
        return self.sim.now

    def _run(self, fn, args) -> None:
        if self.alive:
            fn(*args)

    def call_soon(self, fn, *args) -> _Handle:
        return self.sim.call_at(self.sim.now, self._run, fn, args)

    def call_later(self, delay: float, fn, *args) -> _Handle:
        return self.sim.call_at(self.sim.now + delay, self._run, fn, args)

    def create_future(self) -> SimFuture:
        return SimFuture()

