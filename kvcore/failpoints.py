"""Failpoints: crash or slow the member at named points of its write path, for
fault-injection tests (etcd's gofail, set through the environment).

    KVCORE_FAILPOINTS="wal-before-write=crash,apply-after=crash@3,wal-fsync=sleep(200)"

Actions: ``crash`` (the process dies at once, as from kill -9: no cleanup, no
flush), ``crash@N`` (on the N-th time the point is reached), ``sleep(MS)`` (delay
there, every time: a slow disk). Points (where a call site names them):

  wal-before-write   entries reserved in the WAL, not yet written
  wal-after-fsync    entries written and synced, not yet acknowledged to Raft
  wal-fsync          the WAL's fdatasync (use with sleep: a slow disk; the delay is
                     spent on the writer thread and counted as fsync time)
  apply-before       committed entries about to be applied to the backend
  apply-staged       a lone put applied into its open write transaction while its
                     WAL write waits for the fdatasync (the only point armed that
                     keeps that path: any other turns it off)
  apply-after        applied and committed to the backend, responses not yet sent
  snapshot-install   a received snapshot's data about to replace the backend
  compact-before     a compaction about to be written to the backend
  defrag-before      a defragmentation about to copy the backend

Zero cost when off: ``ACTIVE`` is None unless the variable is set, and every call
site tests ``if failpoints.ACTIVE is not None`` before calling ``hit``.
"""
from __future__ import annotations

import os
import re
import sys
import time
from typing import Optional

ENV = "KVCORE_FAILPOINTS"
POINTS = ("wal-before-write", "wal-after-fsync", "wal-fsync", "apply-before", "apply-after",
          "apply-staged", "snapshot-install", "compact-before", "defrag-before")
_ACTION = re.compile(r"^(crash)(?:@(\d+))?$|^sleep\((\d+)\)$")


class _Point:
    __slots__ = ("name", "crash_at", "sleep_s", "hits")

    def __init__(self, name: str, crash_at: int, sleep_s: float):
        self.name, self.crash_at, self.sleep_s, self.hits = name, crash_at, sleep_s, 0


def parse(spec: str) -> dict:
    """'name=action,...' -> {name: _Point}; ValueError names what is wrong."""
    points = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        name = name.strip()
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
        m = _ACTION.match(action.strip())
        if m is None:
            raise ValueError(f"{ENV}: bad action {action!r} for {name} "
                             "(crash, crash@N or sleep(MS))")
        if m.group(1):
            points[name] = _Point(name, int(m.group(2) or 1), 0.0)
        else:
            points[name] = _Point(name, 0, int(m.group(3)) / 1000.0)
    return points


def hit(name: str) -> None:
    """Reached failpoint ``name``: do what it is armed with (nothing if unarmed)."""
    p = ACTIVE.get(name) if ACTIVE else None
    if p is None:
        return
    if p.sleep_s:
        time.sleep(p.sleep_s)
        return
    p.hits += 1
    if p.hits >= p.crash_at:
        # One line for the test harness to see, then die without any cleanup.
        os.write(2, f"kvcore: failpoint {name} fired (crash)\n".encode())
        os._exit(86)


def sleep_seconds(name: str) -> float:
    """The sleep failpoint ``name`` is armed with (0.0: none), for a call site that
    delays on another thread (the WAL writer's fdatasync) instead of calling hit."""
    p = ACTIVE.get(name) if ACTIVE else None
    return p.sleep_s if p is not None else 0.0


def only(*names: str) -> bool:
    """No failpoint is armed but these (a path that would skip the others' call
    sites stays open to tests of its own points)."""
    return ACTIVE is None or all(n in names for n in ACTIVE)


def _load() -> Optional[dict]:
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    try:
        return parse(spec)
    except ValueError as e:
        sys.exit(str(e))


ACTIVE: Optional[dict] = _load()
