"""Request deadlines without a loop timer per request.

Every proposal and linearizable read gets the same timeout (etcd's request timeout),
so the order in which they arrive is the order in which they expire: one deque and
one timer for its head replace a timer per request (a uvloop timer each, and tens
of thousands alive at a time under load).
"""
from __future__ import annotations

import collections
from typing import Callable


class Deadlines:
    def __init__(self, loop, timeout: float, on_expire: Callable):
        self.loop = loop
        self.timeout = timeout
        self.on_expire = on_expire     # called with each future still pending at its deadline
        self._q: collections.deque = collections.deque()
        self._timer = None

    def add(self, fut) -> None:
        q = self._q
        while q and q[0][1].done():    # answered ones leave from the front
            q.popleft()
        q.append((self.loop.time() + self.timeout, fut))
        if self._timer is None:
            self._timer = self.loop.call_at(q[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        q = self._q
        now = self.loop.time()
        while q and (q[0][0] <= now or q[0][1].done()):
            _, fut = q.popleft()
            if not fut.done():
                self.on_expire(fut)
        if q:
            self._timer = self.loop.call_at(q[0][0], self._fire)

    def __len__(self) -> int:
        return len(self._q)
