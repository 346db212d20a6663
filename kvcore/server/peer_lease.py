"""Lease requests a follower hands to the leader (etcd's /leases and /leases/internal
peer handlers): only the leader's lessor keeps time, so a keep-alive or a
TimeToLive that reaches a follower is answered by the leader.

On the peer port, a connection opened with lane LANE_LEASE carries requests and
answers, each framed as a 4-byte length and the body:

  request  kind (1 byte: RENEW or TIME_TO_LIVE) + LeaseKeepAliveRequest or
           LeaseTimeToLiveRequest bytes
  answer   status (1 byte: OK, NOT_LEADER, ERROR) + the response bytes without
           header (OK) or an error message

answered in order. A follower keeps one connection to the current leader and
pipelines its requests on it (LeaseForwarder).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import struct
from typing import Callable, Optional

log = logging.getLogger("kvcore.peer")

RENEW, TIME_TO_LIVE = 0, 1
OK, NOT_LEADER, ERROR = 0, 1, 2
_LEN = struct.Struct("<I")
MAX_FRAME = 1 << 20


class NotLeader(Exception):
    """The member asked is not (or no longer) the leader."""


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                answer: Optional[Callable[[int, bytes], tuple]]) -> None:
    """The leader's side of a lease connection: ``answer(kind, request)`` ->
    (status, bytes), synchronous (the lessor is the core's, on the core's loop)."""
    while True:
        n = _LEN.unpack(await reader.readexactly(4))[0]
        if n == 0 or n > MAX_FRAME:
            return
        body = await reader.readexactly(n)
        if answer is None:
            status, out = NOT_LEADER, b""
        else:
            try:
                status, out = answer(body[0], body[1:])
            except Exception as e:   # a bad request: say so, keep the connection
                status, out = ERROR, str(e).encode()
        writer.write(_LEN.pack(len(out) + 1) + bytes((status,)) + out)
        await writer.drain()


class _Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.pending: collections.deque = collections.deque()
        self.task: Optional[asyncio.Task] = None
        self.broken = False

    async def read_answers(self) -> None:
        try:
            while True:
                n = _LEN.unpack(await self.reader.readexactly(4))[0]
                body = await self.reader.readexactly(n)
                fut = self.pending.popleft()
                if fut.done():
                    continue
                if body[0] == OK:
                    fut.set_result(body[1:])
                elif body[0] == NOT_LEADER:
                    fut.set_exception(NotLeader())
                else:
                    fut.set_exception(OSError(body[1:].decode(errors="replace")))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, IndexError) as e:
            self.fail(e)

    def fail(self, e: BaseException) -> None:
        self.broken = True
        self.writer.close()
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError(f"lease connection to the leader: {e!r}"))


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


class LeaseForwarder:
    """A follower's connection to the leader for lease requests.

    ``open_lane(leader_id)`` -> (reader, writer) of a fresh LANE_LEASE connection
    whose handshake has been accepted (PeerTransport.open_lease_lane)."""

    def __init__(self, open_lane: Callable):
        self._open_lane = open_lane
        self._conns: dict[int, _Conn] = {}
        self._opening: dict[int, asyncio.Future] = {}

    async def call(self, leader_id: int, kind: int, request: bytes, timeout: float) -> bytes:
        """The leader's answer (response bytes without header); NotLeader if it is not
        the leader, OSError/ConnectionError/TimeoutError if it cannot be asked."""
        conn = await asyncio.wait_for(self._conn(leader_id), timeout)
        fut = asyncio.get_running_loop().create_future()
        # Waited on through a shield: once this caller timed out, the connection's
        # failure would land on a future nobody reads (an error line per request).
        fut.add_done_callback(_retrieve)
        conn.pending.append(fut)
        conn.writer.write(_LEN.pack(len(request) + 1) + bytes((kind,)) + request)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            # A leader that does not answer in time: the next request dials again
            # rather than queueing behind this one.
            conn.fail(ConnectionError("no answer in time"))
            raise

    async def _conn(self, leader_id: int) -> _Conn:
        conn = self._conns.get(leader_id)
        if conn is not None and not conn.broken:
            return conn
        opening = self._opening.get(leader_id)
        if opening is None:   # one dial for every request waiting on it
            opening = self._opening[leader_id] = asyncio.ensure_future(self._dial(leader_id))
            opening.add_done_callback(lambda _f: self._opening.pop(leader_id, None))
        return await asyncio.shield(opening)

    async def _dial(self, leader_id: int) -> _Conn:
        reader, writer = await self._open_lane(leader_id)
        conn = _Conn(reader, writer)
        conn.task = asyncio.ensure_future(conn.read_answers())
        for old in [c for pid, c in self._conns.items() if pid != leader_id]:
            old.fail(ConnectionError("the leader changed"))
        self._conns = {leader_id: conn}
        return conn

    def close(self) -> None:
        for c in self._conns.values():
            c.fail(ConnectionError("closing"))
            if c.task is not None:
                c.task.cancel()
        self._conns.clear()
