"""Streaming gateway routes (Watch, LeaseKeepAlive, Election.Observe,
Maintenance.Snapshot) as grpc-gateway serves them: the request body is a
sequence of JSON messages sent in order, then the send side is closed; the
answer is 200 with one ``{"result":...}`` chunk (plus a newline) per message.

The status is decided by the first message or error, as grpc-gateway writes no
header before it: an error first gives that error's HTTP status and one
``{"error":{grpc_code, http_code, message, http_status}}`` chunk; an error later
ends the stream with that chunk. A client that does not read slows its stream
down like a slow gRPC client: the bounded queue below fills, the stream handler
stops taking messages from the core, and the core treats it as a slow watcher.
"""
from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import AsyncIterator, Callable, Optional

from kvcore.engine.base import CallContext, GrpcError, StatusCode
from kvcore.gateway import codec
from kvcore.gateway.errors import http_status

# Response messages buffered per stream in the worker; the rest waits in the core.
QUEUE_MESSAGES = 16

_MSG, _END, _ERR = 0, 1, 2


async def open_stream(handler: Callable, method: str, requests: list[bytes],
                      out_cls, token: Optional[str]):
    """Run a stream handler (engine contract: requests, send, ctx) and return
    (status, body chunks) once the first message, the end or an error is known."""
    queue: asyncio.Queue = asyncio.Queue(QUEUE_MESSAGES)

    async def send(msg: bytes) -> None:
        await queue.put((_MSG, msg))

    async def request_stream() -> AsyncIterator[bytes]:
        for r in requests:
            yield r

    async def run() -> None:
        try:
            await handler(request_stream(), send, CallContext(
                method, metadata={"token": token} if token else {}))
            await queue.put((_END, None))
        except GrpcError as e:
            await queue.put((_ERR, e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # reported to the client like grpc-gateway's Unknown
            await queue.put((_ERR, GrpcError(StatusCode.UNKNOWN, str(e))))

    task = asyncio.ensure_future(run())
    try:
        first = await queue.get()
    except BaseException:
        task.cancel()
        raise
    status = http_status(first[1].code) if first[0] == _ERR else 200
    return status, _chunks(first, queue, task, out_cls)


async def _chunks(item, queue: asyncio.Queue, task: asyncio.Future, out_cls):
    try:
        while True:
            kind, value = item
            if kind == _END:
                return
            if kind == _ERR:
                yield error_chunk(value)
                return
            yield b'{"result":' + codec.encode(out_cls.FromString(value)) + b"}\n"
            item = await queue.get()
    finally:
        task.cancel()


def error_chunk(e: GrpcError) -> bytes:
    code = http_status(e.code)
    return codec.dumps({"error": {"grpc_code": int(e.code), "http_code": code,
                                  "message": e.message,
                                  "http_status": HTTPStatus(code).phrase}})
