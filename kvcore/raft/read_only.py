"""ReadIndex bookkeeping (Raft thesis §6.4 / paper §8: linearizable reads without log
writes).

The leader records its commit index when a read request arrives, then broadcasts a
heartbeat carrying the request context.  Once a quorum acknowledged that heartbeat, the
leader knows it was still the leader when the request arrived, so the recorded index is
safe to read at: the requester waits until it has applied that index, then serves.

Contexts must be unique per request (the caller's responsibility).  Requests are
answered in arrival order: an acked context also releases every request queued before it.
"""
from __future__ import annotations


class ReadState:
    """Returned in Ready.read_states: read at ``index`` once applied >= index."""

    __slots__ = ("index", "request_ctx")

    def __init__(self, index: int, request_ctx: bytes) -> None:
        self.index = index
        self.request_ctx = request_ctx

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ReadState) and self.index == other.index
                and self.request_ctx == other.request_ctx)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadState(index={self.index}, ctx={self.request_ctx!r})"


class ReadIndexStatus:
    __slots__ = ("req", "index", "acks")

    def __init__(self, req, index: int) -> None:
        self.req = req
        self.index = index
        self.acks: set = set()


class ReadOnly:
    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, m) -> None:
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(m, index)
        self.queue.append(ctx)

    def recv_ack(self, nid: int, ctx: bytes):
        """Record a heartbeat ack carrying ``ctx``; return the ack set (or None)."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(nid)
        return rs.acks

    def advance(self, ctx: bytes) -> list:
        """Dequeue every request up to and including ``ctx``."""
        try:
            i = self.queue.index(ctx)
        except ValueError:
            return []
        done = self.queue[:i + 1]
        del self.queue[:i + 1]
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
