"""A lean HTTP/2 client for unary gRPC calls (cleartext with prior knowledge, or TLS
with ALPN h2).

    client = UnaryClient([(host, port), ...], authority, max_send, max_recv, ssl_context)
    response = await client.call(path, request, metadata, timeout)  # raw message bytes
    client.close()

A call raises `CallError(status, message)` for a gRPC status other than OK, or
`NotSent` when the request certainly was not processed (no endpoint reachable, a
stream refused or above a GOAWAY's last stream id), so the caller may send it again
another way. Streams are not its business (the proxy keeps grpc.aio for them).

framing.py: frames and HPACK (shared with bench/); connection.py: one connection's
HTTP/2 state; client.py: endpoints, (re)connecting, deadlines.
"""
from .client import UnaryClient
from .connection import CallError, NotSent

__all__ = ["UnaryClient", "CallError", "NotSent"]
