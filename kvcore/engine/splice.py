"""Hands whole connections to another local server, byte for byte.

The grpcio engine cannot share its port with HTTP/1.1, so with an HTTP handler
the public port is served by the native engine's connection sniffer (HTTP/1.x
there, /health and the JSON gateway) and every HTTP/2 connection is spliced to
grpcio listening on a Unix socket. Each direction stops reading when the other
side's write buffer is full, so a slow peer costs bounded memory.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

log = logging.getLogger("kvcore.engine.splice")


class _Half(asyncio.Protocol):
    """One side of a splice: what it reads goes to ``peer``'s transport."""

    def __init__(self, splice: "Splice"):
        self.splice = splice
        self.transport = None
        self.other: "_Half" = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self is self.splice.client:
            self.splice.heard = True
        self.other.write(data)

    def write(self, data):
        if self.transport is not None:
            self.transport.write(data)
        else:
            self.splice.pending.append(data)   # the upstream is still connecting

    def eof_received(self):
        if self.other.transport is not None and self.other.transport.can_write_eof():
            self.other.transport.write_eof()
            return True
        return False

    def pause_writing(self):
        if self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self):
        if self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None
        if self.other.transport is not None:
            self.other.transport.close()


class Splice:
    def __init__(self, silence: Optional[float] = None):
        self.pending: list[bytes] = []
        self.client = _Half(self)
        self.upstream = _Half(self)
        self.client.other, self.upstream.other = self.upstream, self.client
        self.heard = False
        if silence:
            asyncio.get_running_loop().call_later(silence, self._check_silence, silence)

    def _check_silence(self, silence: float) -> None:
        """Server keepalive for the spliced server: grpcio pings a silent client after
        --grpc-keepalive-interval but never closes when no answer comes, where etcd
        closes --grpc-keepalive-timeout later. A client that sent nothing for
        interval + timeout did not answer that ping: the connection ends here."""
        c = self.client.transport
        if c is None or c.is_closing():
            return
        if not self.heard:
            log.info("closing %s: no keepalive answer", c.get_extra_info("peername"))
            c.close()
            return
        self.heard = False
        asyncio.get_running_loop().call_later(silence, self._check_silence, silence)


def unix_passthrough(path: str, silence: Optional[float] = None):
    """An ``h2_passthrough`` for the native engine core: splice to ``path``.
    ``silence``: close a client that sends nothing for that long (server keepalive's
    interval + timeout; None: never)."""
    def take(transport, first: bytes) -> None:
        sp = Splice(silence)
        transport.set_protocol(sp.client)
        sp.client.connection_made(transport)
        sp.pending.append(first)
        transport.pause_reading()   # until the upstream is there
        asyncio.ensure_future(_connect(sp, path))
    return take


async def _connect(sp: Splice, path: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.create_unix_connection(lambda: sp.upstream, path)
    except OSError as e:
        log.warning("cannot reach the gRPC server at %s: %s", path, e)
        if sp.client.transport is not None:
            sp.client.transport.close()
        return
    for data in sp.pending:
        sp.upstream.transport.write(data)
    sp.pending.clear()
    if sp.client.transport is not None:
        sp.client.transport.resume_reading()
    else:
        sp.upstream.transport.close()


def unix_socket_passthrough(path: str, silence: Optional[float] = None):
    """A TLSListener ``raw_route`` target: splice an accepted socket (still
    encrypted) to the server on ``path``."""
    async def take(conn) -> None:
        loop = asyncio.get_running_loop()
        sp = Splice(silence)
        transport, _ = await loop.connect_accepted_socket(lambda: sp.client, sock=conn)
        transport.pause_reading()   # until the upstream is there
        await _connect(sp, path)
    return take
