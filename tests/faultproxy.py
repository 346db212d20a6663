"""A fault-injecting proxy for kvcore's peer traffic, on loopback.

Each member advertises the proxy's address as its peer URL, so every connection to
it arrives here first. The proxy reads the peer handshake to learn which member is
talking to which, then forwards bytes both ways, unless that direction is cut:
``block(a, b)`` cuts every message from a to b (a one-way partition; block both
directions for a symmetric one). Cut connections are closed and new ones refused,
so they behave like a network that drops everything.
"""
from __future__ import annotations

import asyncio
import struct
import threading

MAGIC = b"KVPEER1\n"
_HELLO = struct.Struct("<QQQB")


class FaultProxy:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.blocked: set[tuple[int, int]] = set()
        self.routes: dict[int, int] = {}      # proxy port -> real port
        self._conns: list = []                # (from, to, writers)
        self._servers = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add_route(self, listen_port: int, target_port: int) -> None:
        async def start():
            srv = await asyncio.start_server(
                lambda r, w: self._handle(r, w, target_port), "127.0.0.1", listen_port)
            self._servers.append(srv)
        self._run(start())

    def block(self, frm: int, to: int) -> None:
        self.loop.call_soon_threadsafe(self._block, frm, to)

    def _block(self, frm, to):
        self.blocked.add((frm, to))
        for f, t, writers in list(self._conns):
            if (f, t) == (frm, to):
                for w in writers:
                    w.close()

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self.blocked.clear)

    async def _handle(self, reader, writer, target_port):
        try:
            head = await asyncio.wait_for(reader.readexactly(len(MAGIC) + _HELLO.size), 5)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            writer.close()
            return
        _, frm, to, _lane = _HELLO.unpack_from(head, len(MAGIC))
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

        async def pipe(src, dst):
            try:
                while True:
                    data = await src.read(65536)
                    if not data or (frm, to) in self.blocked:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
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
