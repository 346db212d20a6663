"""The engine-neutral handler interface.

Everything above this line (kvcore's services) deals in request bytes and
response bytes per gRPC method path; everything below it (an engine: grpcio's
server, or the native libnghttp2 one) deals in HTTP/2 and gRPC framing. An
engine never imports kvcore's services and a service never imports an engine.

Contract
--------
* A unary handler is ``async def h(request: bytes, ctx: CallContext) -> bytes``.
  It returns the serialized response message (without the 5-byte gRPC prefix)
  or raises :class:`GrpcError` with a status code and message; the engine sends
  them as ``grpc-status`` / ``grpc-message`` trailers. Any other exception is
  reported as UNKNOWN with its text.
* A stream handler (client-, server- or bidi-streaming) is
  ``async def h(requests: RequestStream, send: SendFn, ctx: CallContext) -> None``.
  ``requests`` is an async iterator of serialized request messages that ends when
  the client half-closes. ``await send(bytes)`` queues one response message and
  returns when the engine can take more (flow control: a slow reader slows only
  its own stream). Returning ends the call with OK; raising GrpcError ends it with
  that status. A server-streaming method (e.g. Maintenance.Snapshot) reads its one
  request from ``requests``.
* Handlers must be cancellable: when the client resets the stream, the deadline
  passes or the connection drops, the engine cancels the handler's task.
* Method paths are gRPC's: ``/etcdserverpb.KV/Range``.
"""
from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import AsyncIterator, Awaitable, Callable, Mapping, Optional, Protocol


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def certificate_cn(cert) -> str:
    """The subject CN of a certificate as ssl.SSLObject.getpeercert() gives it."""
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


class GrpcError(Exception):
    """Ends a call with a gRPC status; ``message`` goes out as grpc-message."""

    def __init__(self, code: StatusCode, message: str):
        super().__init__(message)
        self.code = StatusCode(code)
        self.message = message

    def __repr__(self) -> str:
        return f"GrpcError({self.code.name}, {self.message!r})"


@dataclass
class CallContext:
    """What a handler may know about its call, whatever the engine."""

    method: str
    # Request metadata with lower-case keys (e.g. etcd's auth "token" header).
    metadata: Mapping[str, str] = field(default_factory=dict)
    peer: str = ""
    # Absolute deadline on the event loop's clock (loop.time()), or None.
    deadline: Optional[float] = None
    # The CN of the client's verified TLS certificate ("" without one).
    common_name: str = ""
    # The stream's send() takes Framed batches (the native engine); else one
    # message per send().
    framed_send: bool = False
    # A streaming call's send that never waits (the native engine): queues the
    # message (or Framed batch) and returns True, or queues nothing and returns
    # False when send() would wait or fail; then use send().
    send_nowait: Optional[Callable[[object], bool]] = None


class Framed:
    """Several response messages of one stream, each already carrying its gRPC
    prefix (u8 0, u32 big-endian length): an engine whose CallContext says
    ``framed_send`` queues them with one send(). len() is the messages' bytes."""

    __slots__ = ("data", "count")

    def __init__(self, data: bytes, count: int):
        self.data = data
        self.count = count

    def __len__(self) -> int:
        return len(self.data) - 5 * self.count


RequestStream = AsyncIterator[bytes]
SendFn = Callable[[bytes], Awaitable[None]]
UnaryHandler = Callable[[bytes, CallContext], Awaitable[bytes]]
StreamHandler = Callable[[RequestStream, SendFn, CallContext], Awaitable[None]]


@dataclass
class MethodTable:
    """Method path -> handler. Paths not present answer UNIMPLEMENTED."""

    unary: dict[str, UnaryHandler] = field(default_factory=dict)
    stream: dict[str, StreamHandler] = field(default_factory=dict)

    def paths(self) -> set[str]:
        return set(self.unary) | set(self.stream)

    def services(self) -> frozenset[str]:
        return frozenset(p[1:].rpartition("/")[0] for p in self.paths())


# grpc-go's words (etcd's server) for a message it cannot unmarshal on a stream.
UNMARSHAL_STREAM = "grpc: failed to unmarshal the received message"


def unknown_method_message(path: str, services: frozenset) -> str:
    """grpc-go's UNIMPLEMENTED message for a path no handler serves: the service is
    what comes before the path's last '/'."""
    name = path[1:] if path.startswith("/") else path
    service, slash, method = name.rpartition("/")
    if not slash:
        return f"malformed method name: {json.dumps(path)}"
    if service in services:
        return f"unknown method {method} for service {service}"
    return f"unknown service {service}"


# An HTTP/1.1 (or h2 non-gRPC) request handler for /health, /version, /metrics and
# the /v3/ JSON gateway: (method, path, headers, body) -> (status, headers, body).
# ``headers`` has lower-case names ("host" is HTTP/2's :authority too); the engine
# alone sets CLIENT_CN_HEADER, to the CN of the client's verified TLS certificate
# (v2 auth's client-cert users), and CLIENT_TLS_HEADER ("1") when TLS carries the
# request (--host-whitelist applies to plain HTTP only).
CLIENT_CN_HEADER = "x-kvcore-client-cn"
CLIENT_TLS_HEADER = "x-kvcore-tls"
HttpHandler = Callable[[str, str, Mapping[str, str], bytes],
                       Awaitable[tuple[int, list[tuple[str, str]], bytes]]]


class Engine(Protocol):
    """A gRPC server engine serving one MethodTable on one listening address."""

    async def start(self, host: str, port: int, *, reuse_port: bool = True,
                    ssl_context=None, sock=None) -> None: ...
    # ``sock``: an already listening socket to accept on (the core's, inherited)
    # instead of binding host:port.

    async def stop(self, grace: float = 1.0) -> None: ...


_date_cache = [0, ""]


def http_date() -> str:
    """The Date header's value as Go's net/http writes it on every response
    ("Mon, 07 Dec 2026 09:25:00 GMT"), formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return _date_cache[1]
