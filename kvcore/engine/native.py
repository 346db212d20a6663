"""The native engine: HTTP/2 by the system libnghttp2, gRPC framing in Cython
(kvcore._ext.grpc_engine), on the running (uv)loop's transports.

Same shape as GrpcioEngine: ``NativeEngine(methods, http=..., max_receive_message_length=...)``,
``await start(host, port, reuse_port=True, ssl_context=None) -> bound port``,
``await stop(grace)``. One listening port serves:

* HTTP/2 with prior knowledge (h2c; what etcdctl and gRPC clients use on plain TCP)
  and, with ``ssl_context``, HTTP/2 over TLS (ALPN ``h2``);
* HTTP/1.x requests (/health, /version, /metrics, the /v3/ JSON gateway) and
  non-gRPC HTTP/2 requests, given to the ``http`` handler (404 without one).

Handlers run *eagerly*: a unary handler's first step runs inside the
connection's read callback, and a Task is created only if it awaits something
not yet done. A handler that needs ``asyncio.current_task()`` (``asyncio.timeout``)
before its first real suspension should be wrapped, or the engine built with
``eager=False``.

The compiled module is chosen by ``kvcore._ext.load``: a missing build is an error,
except in pure-Python mode (``KVCORE_PURE_PYTHON=1``), where there is no native engine
and :func:`create_engine` serves with grpcio, with a log line.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Optional

from kvcore import _ext

from .base import HttpHandler, MethodTable

log = logging.getLogger("kvcore.engine.native")

# The compiled engine; None only in pure-Python mode (it has no twin). Outside that
# mode a missing build raises kvcore._ext.NativeBuildMissing here, on import.
_core = _ext.load("grpc_engine")
IMPORT_ERROR: Optional[BaseException] = (
    None if _core is not None else ImportError("no native engine in pure-Python mode "
                                               f"({_ext.PURE_ENV}=1)"))


class NativeEngineUnavailable(ImportError):
    """There is no compiled engine (pure-Python mode); an ImportError so callers
    that fall back to grpcio on ImportError do so."""


def available() -> bool:
    return _core is not None


def request_window(max_receive_message_length: int) -> int:
    """The default initial stream window: room for the largest request message the
    engine accepts, with its 5-byte gRPC prefix (at least 1 MiB, at most the 16 MiB
    connection window). A client then sends any acceptable request without waiting
    for a WINDOW_UPDATE round trip mid-message; with a 1 MiB window a 1 MiB put
    (1 MiB + 17 bytes on the wire) waited for one every time. grpc-go (etcd) gets
    there by growing its windows from the pending message size and BDP pings."""
    return max(1 << 20, min(max_receive_message_length + 5, 16 << 20))


class NativeEngine:
    """Serves a MethodTable (and an optional HTTP handler) on one port."""

    name = "native"

    def __init__(self, methods: MethodTable, *, http: Optional[HttpHandler] = None,
                 max_receive_message_length: int = 2 * 1024 * 1024 + 512 * 1024,
                 max_send_message_length: int = 2 ** 31 - 1,
                 max_concurrent_streams: int = 1000,
                 initial_window_size: Optional[int] = None,
                 connection_window_size: int = 16 << 20,
                 max_header_list_size: int = 16 << 10,
                 connection_buffer_budget: int = 16 << 20,
                 stream_write_high_water: int = 256 << 10,
                 keepalive_min_time: float = 5.0,
                 keepalive_time: float = 7200.0,
                 keepalive_timeout: float = 20.0,
                 eager: bool = True):
        if _core is None:
            raise NativeEngineUnavailable(f"native gRPC engine unavailable: {IMPORT_ERROR}")
        if initial_window_size is None:
            initial_window_size = request_window(max_receive_message_length)
        self._core = _core.EngineCore(
            methods, http,
            max_receive_message_length=max_receive_message_length,
            max_send_message_length=max_send_message_length,
            max_concurrent_streams=max_concurrent_streams,
            initial_window_size=initial_window_size,
            connection_window_size=connection_window_size,
            max_header_list_size=max_header_list_size,
            connection_buffer_budget=connection_buffer_budget,
            stream_write_high_water=stream_write_high_water,
            ping_min_time=keepalive_min_time, keepalive_time=keepalive_time,
            keepalive_timeout=keepalive_timeout, eager=eager)
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, host: str, port: int, *, reuse_port: bool = True,
                    ssl_context=None, sock: Optional[socket.socket] = None,
                    allow_plaintext: bool = False,
                    alpn: tuple = ("h2", "http/1.1"), raw_route=None) -> int:
        """With ``ssl_context``, every connection is TLS (ALPN ``alpn``, the server's
        preference first) and a failed handshake is logged; ``allow_plaintext`` also
        serves clients whose first byte is not a TLS record without TLS (http and
        https on one port). ``raw_route``: kvcore.tls.TLSListener's (connections
        handed on before TLS ends here)."""
        loop = asyncio.get_running_loop()
        self._core.loop = loop
        self._core.shutting_down = False
        if ssl_context is not None:
            try:
                ssl_context.set_alpn_protocols(list(alpn))
            except (AttributeError, NotImplementedError):
                pass
            from kvcore.tls import TLSListener, listen_socket
            if sock is None:
                sock = listen_socket(host, port, reuse_port=reuse_port)
            self._server = TLSListener(sock, ssl_context, self._core.protocol,
                                       allow_plaintext=allow_plaintext, raw_route=raw_route)
            self._server.start()
        elif sock is not None:
            from kvcore.engine.shared_accept import SharedListener
            self._server = SharedListener(sock, self._core.protocol)
            self._server.start()
        else:
            self._server = await loop.create_server(
                self._core.protocol, host, port, reuse_port=reuse_port or None,
                backlog=1024)
        self._core.start_keepalive()
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 1.0) -> None:
        """Graceful: stop accepting, GOAWAY (notice, then last stream id), let
        running calls finish for up to ``grace`` seconds, then cancel the rest."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        self._core.stop_keepalive()
        loop = asyncio.get_running_loop()
        self._core.shutdown_notice()
        await asyncio.sleep(min(0.05, grace))     # ~1 RTT for in-flight HEADERS
        self._core.goaway()
        end = loop.time() + grace
        while self._core.active_streams() and loop.time() < end:
            await asyncio.sleep(0.01)
        self._core.abort_all()
        await asyncio.sleep(0)

    def stats(self) -> dict:
        """Open connections, open streams and bytes buffered (for tests)."""
        return self._core.stats()


def create_engine(kind: str, methods: MethodTable, keepalive: Optional[dict] = None,
                  **kwargs):
    """``--grpc-engine`` switch: 'native' (grpcio, with a log line, in pure-Python
    mode, where there is no compiled engine) or 'grpcio'. ``keepalive``: etcd's
    --grpc-keepalive-min-time/-interval/-timeout in seconds (keys min_time,
    interval, timeout)."""
    from .grpcio_engine import GrpcioEngine

    ka = keepalive or {}
    if kind == "native":
        if _core is not None:
            if ka:
                kwargs.update(keepalive_min_time=ka.get("min_time", 5.0),
                              keepalive_time=ka.get("interval", 7200.0),
                              keepalive_timeout=ka.get("timeout", 20.0))
            return NativeEngine(methods, **kwargs)
        log.warning("native gRPC engine unavailable (%s); falling back to grpcio",
                    IMPORT_ERROR)
        kind = "grpcio"
    if kind != "grpcio":
        raise ValueError(f"unknown gRPC engine {kind!r}")
    kwargs = {k: v for k, v in kwargs.items()
              if k in ("http", "max_receive_message_length", "max_send_message_length",
                       "max_concurrent_streams")}
    return GrpcioEngine(methods, keepalive=ka, **kwargs)
