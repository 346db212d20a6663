"""How long this member has been in touch with each peer: etcd's ActiveSince, which
its strict reconfiguration checks read (a member change is refused while a voter has
not been reachable for the last 5 s: "etcdserver: unhealthy cluster").

Contact is any open peer connection with it, either way (kvcore's lanes are dialled by
the sender, so a follower holds none with another follower), or an answered round
trip of the prober (kvcore/metrics/member.py); it ends when the last such connection
closes or a round trip goes unanswered, and starts afresh at the next."""
from __future__ import annotations

import time
from typing import Callable, Optional


class PeerContact:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._since: dict[int, float] = {}
        self._open: dict[int, int] = {}      # peer id -> open connections, either way

    def opened(self, pid: int) -> None:
        self._open[pid] = self._open.get(pid, 0) + 1
        self._since.setdefault(pid, self._clock())

    def closed(self, pid: int) -> None:
        left = self._open.get(pid, 0) - 1
        if left > 0:
            self._open[pid] = left
            return
        self._open.pop(pid, None)
        self._since.pop(pid, None)

    def answered(self, pid: int) -> None:
        self._since.setdefault(pid, self._clock())

    def unanswered(self, pid: int) -> None:
        self._since.pop(pid, None)

    def since(self, pid: int) -> Optional[float]:
        """The clock's time contact with ``pid`` began; None while there is none."""
        return self._since.get(pid)
