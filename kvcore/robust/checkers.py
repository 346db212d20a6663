"""What a round's history must satisfy, checked after the round (pure functions).

Inputs are plain records so each checker can be fed a hand-made history in tests:

- ``Event(rev, key, kind, value, prev)``: one watch event; ``kind`` is "put" or
  "delete"; ``prev`` is the prev_kv value (None when the key did not exist or the
  watcher did not ask for it).
- a watcher's record: the revision it started at and the list of responses it got,
  each a ``Response(events, header_rev, progress)``; a watcher that lost its stream
  reopens it at the next revision it has not seen, so its record reads as one stream.
- the replay: every event of the round's key prefix, read at the end from the round's
  first revision by one fresh watch on a healthy member. etcd's history is the truth
  the watchers and the acknowledged writes are checked against.

etcd's watch guarantees (https://etcd.io/docs/v3.5/learning/api_guarantees/):
ordered (by revision), unique (no event twice), atomic (a revision's events in one
response), reliable (no gap between the first and the last event a watcher saw),
resumable (a reopened watch continues where it stopped), prev_kv the value before
the event, and progress notifications that never go back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Event:
    rev: int
    key: str
    kind: str                    # "put" | "delete"
    value: Optional[str] = None
    prev: Optional[str] = None


@dataclass
class Response:
    events: list
    header_rev: int
    progress: bool = False       # a progress notification (no events)


@dataclass
class WatchRecord:
    watcher: int
    start_rev: int
    prev_kv: bool = True
    responses: list = field(default_factory=list)


def lost_writes(acked_puts: list[tuple[str, str]], replay: list[Event]) -> list[str]:
    """Acknowledged puts (key, unique value) that no event of the history carries."""
    seen = {(e.key, e.value) for e in replay if e.kind == "put"}
    return [f"acknowledged put {k}={v} is not in the history"
            for k, v in acked_puts if (k, v) not in seen]


def replay_problems(replay: list[Event]) -> list[str]:
    """The replay itself must be ordered, unique and carry prev_kv consistently."""
    out = []
    last: dict[str, Optional[str]] = {}
    prev_rev = 0
    seen = set()
    for e in replay:
        if e.rev < prev_rev:
            out.append(f"replay goes back from revision {prev_rev} to {e.rev}")
        if (e.rev, e.key) in seen:
            out.append(f"replay repeats {e.key} at revision {e.rev}")
        seen.add((e.rev, e.key))
        if e.key in last and e.prev != last[e.key]:
            out.append(f"replay: prev_kv of {e.key} at {e.rev} is {e.prev!r}, "
                       f"the value before was {last[e.key]!r}")
        last[e.key] = e.value if e.kind == "put" else None
        prev_rev = e.rev
    return out


def watch_problems(rec: WatchRecord, replay: list[Event]) -> list[str]:
    """Every guarantee one watcher's record must keep, against the replay."""
    who = f"watcher {rec.watcher}"
    out = []
    got = [e for r in rec.responses for e in r.events]
    # ordered and unique
    prev = 0
    seen = set()
    for e in got:
        if e.rev < prev:
            out.append(f"{who}: revision {e.rev} after {prev} (not ordered)")
        if (e.rev, e.key) in seen:
            out.append(f"{who}: {e.key} at revision {e.rev} delivered twice")
        seen.add((e.rev, e.key))
        prev = max(prev, e.rev)
    # atomic: one revision's events never split across responses
    where: dict[int, int] = {}
    for i, r in enumerate(rec.responses):
        for e in r.events:
            if where.setdefault(e.rev, i) != i:
                out.append(f"{who}: revision {e.rev} split across responses")
                break
    # reliable: exactly the replay's events between its start and its last event
    if got:
        last = max(e.rev for e in got)
        want = [e for e in replay if rec.start_rev <= e.rev <= last]
        want_keys = [(e.rev, e.key, e.kind, e.value) for e in want]
        got_keys = [(e.rev, e.key, e.kind, e.value) for e in got]
        if got_keys != want_keys:
            missing = sorted(set(want_keys) - set(got_keys))[:3]
            extra = sorted(set(got_keys) - set(want_keys))[:3]
            out.append(f"{who}: events differ from the history between revisions "
                       f"{rec.start_rev} and {last}: missing {missing}, unexpected {extra}")
        elif rec.prev_kv:
            truth = {(e.rev, e.key): e.prev for e in want}
            for e in got:
                if e.prev != truth[(e.rev, e.key)]:
                    out.append(f"{who}: prev_kv of {e.key} at {e.rev} is {e.prev!r}, "
                               f"the value before was {truth[(e.rev, e.key)]!r}")
                    break
    # progress notifications never go back, nor behind a delivered event, and no
    # event at or below a notified revision arrives after the notification
    notified = delivered = 0
    for r in rec.responses:
        if r.progress:
            if r.header_rev < max(notified, delivered):
                out.append(f"{who}: progress notification at {r.header_rev} after "
                           f"revision {max(notified, delivered)}")
            notified = max(notified, r.header_rev)
            continue
        for e in r.events:
            if e.rev <= notified:
                out.append(f"{who}: event at revision {e.rev} after a progress "
                           f"notification at {notified}")
                break
        delivered = max([delivered] + [e.rev for e in r.events])
    return out


def lease_problems(key: str, promises: list, deleted_at) -> list[str]:
    """A lease's key deleted (seen by a watcher at ``deleted_at``, monotonic) before a
    TTL it was promised ran out: ``promises`` are (request sent, TTL answered); the
    real deletion was no later than it was seen, and the promised expiry no sooner
    than send + TTL, so seen < send + TTL means the lease was revoked early."""
    if deleted_at is None:
        return []
    broken = [(t, ttl) for t, ttl in promises if deleted_at < t + ttl]
    if not broken:
        return []
    t, ttl = max(broken, key=lambda p: p[0] + p[1])
    return [f"lease of {key} revoked {t + ttl - deleted_at:.2f}s before the {ttl}s TTL "
            f"a keep-alive answered ({len(broken)} such answers)"]
