"""Bugs planted in what the checkers read, to show each checker can fail on a real
round's history (``kvcore-robust --inject-bug``). Each function mutates the round's
records in place and returns what it did, or "" when the round gave it nothing to
work on (then the round cannot show the bug, and says so)."""
from __future__ import annotations

import math


def stale_read(history, watchers, events, leases=()) -> str:
    """A read answers a value that a later, completed put had already replaced."""
    done = [o for o in history if o.ret != math.inf]
    for g in done:
        if g.kind != "get":
            continue
        puts = [o for o in done if o.kind == "put" and o.key == g.key and o.ret < g.call]
        for p1 in puts:
            if any(p2.call > p1.ret and p2.arg != p1.arg for p2 in puts):
                g.result = p1.arg
                return f"read of {g.key} answers the replaced value {p1.arg}"
    return ""


def drop_event(history, watchers, events, leases=()) -> str:
    for w in watchers:
        rs = [r for r in w.record.responses if r.events]
        if len(rs) >= 3:
            victim = rs[len(rs) // 2]
            w.record.responses.remove(victim)
            return f"watcher {w.record.watcher} loses revision {victim.events[0].rev}"
    return ""


def dup_event(history, watchers, events, leases=()) -> str:
    for w in watchers:
        rs = [r for r in w.record.responses if r.events]
        if len(rs) >= 2:
            i = w.record.responses.index(rs[0])
            w.record.responses.insert(i + 1, rs[0])
            return f"watcher {w.record.watcher} gets revision {rs[0].events[0].rev} twice"
    return ""


def lost_write(history, watchers, events, leases=()) -> str:
    acked = {(o.key, o.arg) for o in history if o.kind == "put" and o.ret != math.inf}
    for i, e in enumerate(events):
        if e.kind == "put" and (e.key, e.value) in acked:
            del events[i]
            return f"the store forgets acknowledged put {e.key}={e.value}"
    return ""


def early_revoke(history, watchers, events, leases=()) -> str:
    """A lease's key deleted while a keep-alive's TTL still runs: a watcher sees the
    delete half a TTL after the last renewal was sent."""
    for lc in leases:
        if lc.promises and watchers:
            t, ttl = lc.promises[-1]
            watchers[0].deleted_at[lc.key] = t + ttl / 2
            return f"the lease of {lc.key} is revoked {ttl / 2:.1f}s early"
    return ""


BUGS = {"stale-read": stale_read, "drop-event": drop_event, "dup-event": dup_event,
        "lost-write": lost_write, "early-revoke": early_revoke}
