"""A fault-injecting proxy for the peer traffic of a cluster on loopback.

Each member advertises the proxy's address as its peer URL, so every connection to it
arrives here first. The proxy learns which member is talking from the first bytes of
the connection, for kvcore and for etcd alike:

- kvcore's peer handshake (``KVPEER1`` + cluster id, from, to, lane);
- etcd's rafthttp requests, whose headers carry ``X-Server-From: <member id in hex>``.

It then forwards bytes both ways unless that direction is cut (``block(a, b)`` drops
every message from member a to member b: a one-way partition; block both directions for
a symmetric one), or delayed (``delay(a, b, seconds)``). Cut connections are closed and
new ones refused, so they behave like a network that drops everything. Connections
whose source cannot be told (etcd's version probes) count as from member 0.
Member ids are the ones the cluster reports (MemberList).
"""
from __future__ import annotations

import asyncio
import struct
import threading
from typing import Optional

MAGIC = b"KVPEER1\n"
_HELLO = struct.Struct("<QQQB")
_MAX_HEAD = 16384


def _etcd_source(head: bytes) -> Optional[int]:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-server-from":
            try:
                return int(value.strip(), 16)
            except ValueError:
                return None
    return None


class FaultProxy:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.blocked: set[tuple[int, int]] = set()
        self.delays: dict[tuple[int, int], float] = {}
        self.targets: dict[int, int] = {}     # proxy listen port -> member id (once known)
        self._conns: list = []                # (from, to, writers)
        self._servers = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add_route(self, listen_port: int, target_port: int) -> None:
        async def start():
            srv = await asyncio.start_server(
                lambda r, w: self._handle(r, w, listen_port, target_port),
                "127.0.0.1", listen_port)
            self._servers.append(srv)
        self._run(start())

    def name_target(self, listen_port: int, member_id: int) -> None:
        """Which member sits behind a route (needed for etcd, whose requests name only
        their sender)."""
        self.targets[listen_port] = member_id

    def block(self, frm: int, to: int) -> None:
        self.loop.call_soon_threadsafe(self._block, frm, to)

    def delay(self, frm: int, to: int, seconds: float) -> None:
        self.loop.call_soon_threadsafe(self.delays.__setitem__, (frm, to), seconds)

    def _block(self, frm, to):
        self.blocked.add((frm, to))
        for f, t, writers in list(self._conns):
            if (f, t) == (frm, to):
                for w in writers:
                    w.close()

    def heal(self) -> None:
        def clear():
            self.blocked.clear()
            self.delays.clear()
        self.loop.call_soon_threadsafe(clear)

    async def _read_head(self, reader) -> tuple[bytes, Optional[int], Optional[int]]:
        """-> (bytes read, sender id, receiver id) from the start of a connection."""
        head = await reader.readexactly(len(MAGIC))
        if head == MAGIC:
            rest = await reader.readexactly(_HELLO.size)
            _, frm, to, _lane = _HELLO.unpack(rest)
            return head + rest, frm, to
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEAD:
            chunk = await reader.read(4096)
            if not chunk:
                break
            head += chunk
        return head, _etcd_source(head), None

    async def _handle(self, reader, writer, listen_port, target_port):
        try:
            head, frm, to = await asyncio.wait_for(self._read_head(reader), 5)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            writer.close()
            return
        if to is None:
            to = self.targets.get(listen_port, 0)
        if frm is None:
            frm = 0
        if (frm, to) in self.blocked:
            writer.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        uw.write(head)
        entry = (frm, to, (writer, uw))
        self._conns.append(entry)

        async def pipe(src, dst, a, b):
            try:
                while True:
                    data = await src.read(65536)
                    if not data or (a, b) in self.blocked:
                        break
                    pause = self.delays.get((a, b))
                    if pause:
                        await asyncio.sleep(pause)
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        # A reply travels from the receiver back to the sender: cut it with (to, frm).
        await asyncio.gather(pipe(reader, uw, frm, to), pipe(ur, writer, to, frm))
        self._conns.remove(entry)

    def close(self) -> None:
        async def stop():
            for s in self._servers:
                s.close()
            for _, _, ws in self._conns:
                for w in ws:
                    w.close()
        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
