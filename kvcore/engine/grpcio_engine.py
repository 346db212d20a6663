"""The reference engine: grpcio's asyncio server with raw-bytes generic handlers.

Slow (grpcio spends hundreds of microseconds of CPU per call) but complete; every
conformance test also runs against it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from typing import Optional

# grpc's C core prints its own plain-text lines on stderr (an "I..." line per failed TLS
# handshake); kvcore logs JSON as etcd, so only grpc's errors stay (unless the
# environment asks for more).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402

from .base import CallContext, GrpcError, MethodTable, StatusCode, unknown_method_message

log = logging.getLogger("kvcore.engine.grpcio")

_TO_GRPC = {c.value[0]: c for c in grpc.StatusCode}


def _context(method: str, context: grpc.aio.ServicerContext) -> CallContext:
    md = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
    remaining = context.time_remaining()
    deadline = None
    if remaining is not None:
        deadline = asyncio.get_running_loop().time() + remaining
    cn = (context.auth_context() or {}).get("x509_common_name") or [b""]
    return CallContext(method=method, metadata=md, peer=context.peer() or "",
                       deadline=deadline, common_name=cn[0].decode(errors="replace"))


async def _abort(context, exc: BaseException):
    if isinstance(exc, GrpcError):
        await context.abort(_TO_GRPC[int(exc.code)], exc.message)
    await context.abort(grpc.StatusCode.UNKNOWN, str(exc))


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, methods: MethodTable):
        self._handlers = {}
        self._services = methods.services()
        for path, fn in methods.unary.items():
            # Served as a stream: grpcio never answers a unary call whose client
            # sends no (or a cut-off) message; etcd answers Unknown "EOF".
            self._handlers[path] = grpc.stream_stream_rpc_method_handler(self._unary(path, fn))
        for path, fn in methods.stream.items():
            self._handlers[path] = grpc.stream_stream_rpc_method_handler(self._stream(path, fn))

    def service(self, handler_call_details):
        handler = self._handlers.get(handler_call_details.method)
        if handler is None:    # grpc-go's words, where grpcio says "Method not found!"
            message = unknown_method_message(handler_call_details.method, self._services)

            async def unknown(request_iterator, context):
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
            handler = grpc.stream_stream_rpc_method_handler(unknown)
        return handler

    @staticmethod
    def _unary(path, fn):
        async def call(request_iterator, context):
            request = None
            async for request in request_iterator:
                break
            if request is None:
                await context.abort(grpc.StatusCode.UNKNOWN, "EOF")
            try:
                response = await fn(request, _context(path, context))
            except Exception as exc:  # GrpcError carries its status; others are UNKNOWN
                await _abort(context, exc)
            yield response
        return call

    @staticmethod
    def _stream(path, fn):
        async def call(request_iterator, context):
            async def send(msg: bytes) -> None:
                await context.write(msg)
            try:
                await fn(request_iterator.__aiter__(), send, _context(path, context))
            except Exception as exc:
                await _abort(context, exc)
        return call


class GrpcioEngine:
    """Serves a MethodTable with grpc.aio. grpcio cannot share its port with
    HTTP/1.1, so with an ``http`` handler grpcio listens on a Unix socket and a
    front serves the port (ending TLS first for https): HTTP/1.x itself, HTTP/2
    connections spliced to grpcio (kvcore/engine/splice.py). The front is the native
    engine's sniffer, or its pure-Python twin (kvcore/engine/py_front.py) in
    pure-Python mode."""

    name = "grpcio"

    def __init__(self, methods: MethodTable, *, http=None,
                 max_receive_message_length: int = 2 * 1024 * 1024 + 512 * 1024,
                 max_send_message_length: int = 2 ** 31 - 1, keepalive: Optional[dict] = None,
                 max_concurrent_streams: int = 0):
        """``keepalive``: etcd's --grpc-keepalive-min-time/-interval/-timeout (seconds)."""
        ka = keepalive or {}
        self._methods = methods
        self._http = http
        self._front = None
        self._sock_path: Optional[str] = None
        self._tls_sock_path: Optional[str] = None
        self._options = [
            ("grpc.max_receive_message_length", max_receive_message_length),
            ("grpc.max_send_message_length", max_send_message_length),
            *([("grpc.max_concurrent_streams", max_concurrent_streams)]
              if max_concurrent_streams else []),
            ("grpc.so_reuseport", 1),
            # etcd lets clients ping as often as --grpc-keepalive-min-time without data.
            ("grpc.http2.min_ping_interval_without_data_ms",
             int(ka.get("min_time", 5.0) * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if ka.get("interval", 0) > 0:
            self._options.append(("grpc.keepalive_time_ms", int(ka["interval"] * 1000)))
        if ka.get("timeout", 0) > 0:
            self._options.append(("grpc.keepalive_timeout_ms", int(ka["timeout"] * 1000)))
        # grpcio pings a silent client but does not close it; the splice in front does.
        self._silence = (ka["interval"] + ka["timeout"]
                         if ka.get("interval", 0) > 0 and ka.get("timeout", 0) > 0 else None)
        self._server: Optional[grpc.aio.Server] = None

    async def start(self, host: str, port: int, *, reuse_port: bool = True,
                    ssl_context=None, credentials: Optional[grpc.ServerCredentials] = None,
                    allow_plaintext: bool = False, sock=None) -> int:
        """TLS: grpc ``credentials`` (grpc.ssl_server_credentials) alone make grpcio
        serve the port itself (gRPC only); an ``ssl_context`` (with an ``http``
        handler) makes the front end TLS and splice the decrypted h2
        connections; both (client certificates name gRPC callers): the front ends
        TLS for HTTP clients and hands gRPC ones (ALPN h2 only) still encrypted to
        grpcio, which checks their certificate itself."""
        opts = list(self._options)
        if not reuse_port:
            opts = [o for o in opts if o[0] != "grpc.so_reuseport"] + [("grpc.so_reuseport", 0)]
        self._server = grpc.aio.server(options=opts)
        self._server.add_generic_rpc_handlers((_Generic(self._methods),))
        if ssl_context is not None and self._http is None:
            raise NotImplementedError("TLS with the grpcio engine takes grpc credentials")
        if self._http is not None and (credentials is None or ssl_context is not None):
            return await self._start_front(host, port, reuse_port, ssl_context,
                                           allow_plaintext, credentials, sock)
        if credentials is not None:
            bound = self._server.add_secure_port(f"{host}:{port}", credentials)
        else:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        return bound

    async def _start_front(self, host: str, port: int, reuse_port: bool,
                           ssl_context=None, allow_plaintext: bool = False,
                           credentials=None, sock=None):
        from . import native
        from .base import MethodTable
        from .splice import unix_passthrough, unix_socket_passthrough
        fd, self._sock_path = tempfile.mkstemp(prefix="kvcore-grpcio-", suffix=".sock")
        os.close(fd)
        os.unlink(self._sock_path)
        self._server.add_insecure_port(f"unix:{self._sock_path}")
        raw_route = None
        if credentials is not None:
            self._tls_sock_path = self._sock_path + ".tls"
            self._server.add_secure_port(f"unix:{self._tls_sock_path}", credentials)
            take = unix_socket_passthrough(self._tls_sock_path, self._silence)

            def raw_route(alpn: list):
                return take if alpn and "http/1.1" not in alpn else None
        await self._server.start()
        if native.available():
            self._front = native.NativeEngine(MethodTable(), http=self._http)
            self._front._core.h2_passthrough = unix_passthrough(self._sock_path, self._silence)
        else:   # pure-Python mode: the front's twin answers HTTP/1.x the same
            from .py_front import PyFront
            self._front = PyFront(self._http,
                                  h2_passthrough=unix_passthrough(self._sock_path, self._silence))
        # Over TLS, http/1.1 is preferred: a client offering both (curl) reaches the
        # gateway, a gRPC client offers h2 only and is spliced to grpcio.
        return await self._front.start(host, port, reuse_port=reuse_port, sock=sock,
                                       ssl_context=ssl_context,
                                       allow_plaintext=allow_plaintext,
                                       alpn=("http/1.1", "h2"), raw_route=raw_route)

    async def stop(self, grace: float = 1.0) -> None:
        if self._front is not None:
            await self._front.stop(min(grace, 0.5))
            self._front = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        for path in (self._sock_path, self._tls_sock_path):
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self._sock_path = self._tls_sock_path = None
