"""What a service plugs into the core: its gRPC handlers, its appliers and its timers.

Each service module has ``register(ctx, reg) -> service`` (see services/__init__.py),
called once when the core starts. Contract of what it registers:

* ``unary(path, handler)``: ``handler(request bytes)`` returns the response bytes
  (header included) or a future of them, or raises ``GrpcError``. It runs on the
  core's loop and must not block it.
* ``stream(path, factory)``: ``factory(out)`` returns an object with
  ``on_message(bytes)`` (and optionally ``on_close()``); ``out`` is the stream's
  sending end (``send``, ``end``, ``can_send``, ``on_credit``).
* ``applier(op, fn, capped=None)``: ``fn(txn, w, payload) -> (revision, body)``
  applies one committed entry of ``op`` (kvcore/server/entry.py) inside the apply
  batch's LMDB write transaction ``txn``; ``w`` is the store's write transaction for
  this entry (its changes reach the lessor and watchers after it). ``body`` is the
  response without header; raising ``GrpcError`` answers the caller with it and
  changes nothing. It must be deterministic: every member applies the same entries.
  ``capped(payload)`` says whether the entry is refused while a NOSPACE alarm is
  raised (etcd's capped applier); None: never.
* ``timer(factory)``: ``factory()`` is a coroutine run for the core's life.
* ``state_opened(fn)``: ``fn()`` after the state is (re)built from the backend (at
  start and after a snapshot install).
* ``leader_changed(fn)``: ``fn(old, new)`` when this member learns a new leader.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional


class Applier(NamedTuple):
    fn: Callable
    capped: Optional[Callable[[bytes], bool]]


class Registry:
    def __init__(self):
        self.unary: dict[str, Callable] = {}
        self.streams: dict[str, Callable] = {}
        self.appliers: dict[int, Applier] = {}
        self.timers: list[Callable] = []
        self.on_state_opened: list[Callable] = []
        self.on_leader_changed: list[Callable] = []
        self.services: dict = {}   # name -> service object, as registered so far

    def unary_handler(self, path: str, handler: Callable) -> None:
        self.unary[path] = handler

    def stream(self, path: str, factory: Callable) -> None:
        self.streams[path] = factory

    def applier(self, op: int, fn: Callable, capped: Optional[Callable] = None) -> None:
        if op in self.appliers:
            raise ValueError(f"op {op} already has an applier")
        self.appliers[op] = Applier(fn, capped)

    def timer(self, factory: Callable) -> None:
        self.timers.append(factory)

    def state_opened(self, fn: Callable) -> None:
        self.on_state_opened.append(fn)

    def leader_changed(self, fn: Callable) -> None:
        self.on_leader_changed.append(fn)


def always(payload: bytes) -> bool:
    """A ``capped`` predicate: every entry of the op is refused under NOSPACE."""
    return True
