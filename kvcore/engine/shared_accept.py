"""Accepting on a listening socket shared by the worker processes (the core binds
it once and the workers inherit it, kvcore/engine/client_listeners.py).

asyncio's own server accepts up to its backlog in one wake-up, so with one socket
shared by every worker the first worker woken took most of a burst of connections
(1 against 9 of a benchmark's 10 in a measurement). Accepting one connection per
turn of each worker's loop lets the worker with time to spare take the next one.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable, Optional

log = logging.getLogger("kvcore.engine")


class SharedListener:
    """Serves each connection accepted on ``sock`` with ``protocol_factory``; has
    the part of asyncio.Server the engines use (``sockets``, ``close()``)."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable):
        sock.setblocking(False)
        self.sockets = [sock]
        self._factory = protocol_factory
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets[0]
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:   # EMFILE and the like: do not spin
                log.warning("accept on %s failed: %s", sock.getsockname(), e)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            try:
                if conn.family in (socket.AF_INET, socket.AF_INET6):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.connect_accepted_socket(self._factory, conn)
            except OSError as e:   # the client left already
                log.debug("accepted connection failed: %s", e)
                conn.close()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.sockets[0].close()
