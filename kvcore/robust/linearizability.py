"""A linearizability checker in the style of porcupine (Wing & Gong's search with
Lowe's memoisation), for key-value histories.

A history is a list of operations with real-time call and return instants; an
operation whose outcome is unknown (the client timed out or lost its connection)
has ``ret = math.inf``: it may take effect at any point after its call, or never.
Single-key operations on different keys are independent, so the history is checked
key by key (P-compositionality).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class Op:
    client: int
    kind: str                 # "put", "get", "delete", "cas"
    key: str
    arg: Any = None           # put: value; cas: (expected, new)
    result: Any = None        # get: value or None; cas: succeeded
    call: float = 0.0
    ret: float = math.inf     # inf: outcome unknown


def step(state: Optional[str], op: Op) -> tuple[bool, Optional[str]]:
    """The sequential model of one key: its value, or None when absent."""
    if op.kind == "put":
        return True, op.arg
    if op.kind == "delete":
        return True, None
    if op.kind == "get":
        return op.result == state, state
    if op.kind == "cas":
        expected, new = op.arg
        ok = state == expected
        if op.ret == math.inf:          # unknown outcome: either branch may be what happened
            return True, new if ok else state
        if op.result != ok:
            return False, state
        return True, new if ok else state
    raise ValueError(op.kind)


class _Node:
    __slots__ = ("op", "idx", "is_call", "match", "prev", "next")

    def __init__(self, op, idx, is_call):
        self.op, self.idx, self.is_call = op, idx, is_call
        self.match = self.prev = self.next = None


class CheckerGaveUp(Exception):
    """The search exceeded its step budget: the history is neither proven
    linearizable nor shown not to be (never reported as a pass)."""


MAX_STEPS = 2_000_000


def check_key(ops: list[Op], init: Optional[str] = None) -> bool:
    """True if the single-key history is linearizable. Raises CheckerGaveUp if the
    search needs more than MAX_STEPS steps."""
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort()  # calls before returns at equal instants: the permissive choice
    head = _Node(None, -1, False)
    prev = head
    calls = {}
    for t, kind, i in events:
        n = _Node(ops[i], i, kind == 0)
        if kind == 0:
            calls[i] = n
        else:
            calls[i].match = n
        n.prev, prev.next = prev, n
        prev = n

    def lift(n):
        n.prev.next = n.next
        if n.next:
            n.next.prev = n.prev
        m = n.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(n):
        m = n.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        n.prev.next = n
        if n.next:
            n.next.prev = n

    state = init
    linearized = 0
    cache = set()
    stack = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > MAX_STEPS:
            raise CheckerGaveUp(f"{len(ops)} operations on key {ops[0].key!r}")
        if entry is None:
            return False
        if entry.is_call:
            ok, new = step(state, entry.op)
            bits = linearized | (1 << entry.idx)
            if ok and (bits, new) not in cache:
                cache.add((bits, new))
                stack.append((entry, state))
                state, linearized = new, bits
                lift(entry)
                entry = head.next
            else:
                entry = entry.next
        else:
            if entry.op.ret == math.inf:
                # Only unknown-outcome ops remain unlinearized up to here: they may
                # simply never have happened.
                if all(n.op.ret == math.inf for n in _rest(entry)):
                    return True
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.idx)
            unlift(entry)
            entry = entry.next
    return True


def _rest(n):
    while n is not None:
        yield n
        n = n.next


def prune(ops: list[Op]) -> list[Op]:
    """Drop writes of unknown outcome whose (unique) value nobody observed: such a
    write may be linearized after everything else, which is the same as dropping it,
    and each one left in multiplies the search. Unless a compare-and-swap that
    failed could come after it: a failed CAS observes that the value was *not* the
    one it expected, which an unobserved write may be the only explanation of."""
    observed = {op.result for op in ops if op.kind == "get"}
    observed |= {op.arg[0] for op in ops if op.kind == "cas" and op.result}
    last_failed_cas = max((op.ret for op in ops if op.kind == "cas" and op.result is False
                           and op.ret != math.inf), default=-math.inf)
    out = []
    for op in ops:
        if op.ret == math.inf and op.kind in ("put", "cas") and op.call >= last_failed_cas:
            value = op.arg if op.kind == "put" else op.arg[1]
            if value not in observed:
                continue
        out.append(op)
    return out


def check(history: list[Op]) -> list[str]:
    """Check every key; -> the keys whose history is not linearizable."""
    by_key = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    return [k for k, ops in sorted(by_key.items()) if not check_key(prune(ops))]
