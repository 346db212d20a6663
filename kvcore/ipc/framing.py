"""Frames between a worker and the core.

Each frame is an 11-byte header ``<u32 payload length><u32 call id><u16 method id>
<u8 kind>`` followed by the payload. Both ends collect the frames produced during
one event-loop turn and hand them to the transport in a single write, so one
syscall carries many requests or responses.

Kinds:
  REQ        worker -> core: a unary call (payload: request message bytes)
  RESP       core -> worker: its response message bytes
  ERR        core -> worker: u8 gRPC status code + UTF-8 message
  HELLO      worker -> core: first frame, payload is the worker's pid as text
  S_OPEN     worker -> core: a streaming call starts (call id names the stream)
  S_MSG      either way: one stream message
  S_CLOSE    worker -> core: client half-closed / cancelled (payload b"c" = cancelled)
  S_END      core -> worker: the server ended the stream (payload as ERR, code 0 = OK)
  S_CREDIT   worker -> core: u32 count of stream messages handed to the client since
             the last credit. The core keeps at most STREAM_WINDOW undelivered
             messages per stream, so a slow client costs bounded memory and never
             blocks the core (a watcher beyond its window falls back to catch-up).
  RELOAD     core -> worker: the LMDB file was replaced (snapshot install): reopen it
  CANCEL     worker -> core: the client of unary call ``call id`` went away (deadline,
             RST_STREAM, lost connection): the core cancels what it was waiting for
             (a Lock waiter leaves the queue, as etcd's does)
  TREQ       worker -> core: a unary call that carried an auth "token" header:
             u16 token length, the token, then the request bytes (calls without a
             token stay REQ). S_OPEN's payload is the stream's token, if any.
             A token starting with CN_MARK is no client's token: it carries the
             common name of the client's verified TLS certificate (see caller_token).
  STATS      core -> worker: send your metrics counters (call id names the ask);
             worker -> core: the answer, same call id (kvcore/metrics/grpc_stats.py)
  S_BATCH    core -> worker: several messages of one stream in one frame (a watch
             fan-out: one response per watcher of the stream): u32 count, then each
             message with its gRPC prefix (u8 0, u32 big-endian length), so the
             worker hands them to the engine as one write. It takes one credit per
             message (the worker returns as many once it has handed them on).
  S_REPLY    core -> worker: one stream message that answers one request of the
             client's (a LeaseKeepAliveResponse): it takes no credit and returns
             none, as a unary answer does; what bounds it is what the client sends.
"""
from __future__ import annotations

import asyncio
import socket
import struct

HEADER = struct.Struct("<IIHB")
HSIZE = HEADER.size

(REQ, RESP, ERR, HELLO, S_OPEN, S_MSG, S_CLOSE, S_END, S_CREDIT, RELOAD, CANCEL, TREQ, STATS,
 S_BATCH, S_REPLY) = range(15)

# Pseudo-method ids of REQ frames (above every gRPC method id of kvcore/api/methods.py):
HTTP_METHOD = 0xFFFF        # a worker's /metrics, /health, /livez, /readyz (the core answers)
READ_INDEX_METHOD = 0xFFFD  # a worker's linearizable read: -> u64 applied index to read at
V2_METHOD = 0xFFFC          # a /v2/ HTTP request (JSON) -> the v2 answer (services/v2.py)
AUTH_WHO_METHOD = 0xFFFB    # a token -> who it names, for a worker's own Range check
STREAM_WINDOW = 64
_U32 = struct.Struct("<I")


CN_MARK = "\x00"


def caller_token(token, common_name: str = ""):
    """What names the caller to the core: the client's auth token if it sent one
    (etcd prefers it), else its certificate's CN marked as such, else None. A
    client's own token never starts with the mark (it is stripped)."""
    if token is not None:
        return token.lstrip(CN_MARK) or "-"
    return CN_MARK + common_name if common_name else None


def call_identity(ctx):
    """caller_token for an engine's CallContext: etcd reads the "token" metadata key,
    else "authorization" (its gateway's), else the client certificate."""
    md = ctx.metadata
    token = md.get("token")
    if token is None:
        token = md.get("authorization")
    return caller_token(token, ctx.common_name)


def pack_credit(n: int) -> bytes:
    return _U32.pack(n)


def unpack_credit(payload: bytes) -> int:
    return _U32.unpack(payload)[0]


GRPC_PREFIX = struct.Struct(">BI")    # u8 compressed flag, u32 big-endian length


def pack_batch(messages: list) -> bytes:
    """S_BATCH payload: the count, then each message gRPC-prefixed."""
    prefix = GRPC_PREFIX.pack
    parts = [_U32.pack(len(messages))]
    for m in messages:
        parts.append(prefix(0, len(m)))
        parts.append(m)
    return b"".join(parts)


def pack_batch_count(count: int) -> bytes:
    """The start of an S_BATCH payload whose ``count`` prefixed messages follow."""
    return _U32.pack(count)


def unpack_batch(payload: bytes) -> tuple[int, bytes]:
    """-> (message count, the gRPC-prefixed messages)."""
    return _U32.unpack_from(payload)[0], payload[4:]


def batch_count(payload: bytes) -> int:
    """How many messages an S_BATCH payload holds."""
    return _U32.unpack_from(payload)[0]


def split_batch(payload: bytes) -> list:
    """The messages of an S_BATCH payload, without their prefixes."""
    out, pos, end = [], 4, len(payload)
    while pos < end:
        n = int.from_bytes(payload[pos + 1:pos + 5], "big")
        out.append(payload[pos + 5:pos + 5 + n])
        pos += 5 + n
    return out


def pack_token(token: str, payload: bytes) -> bytes:
    t = token.encode()
    return len(t).to_bytes(2, "little") + t + payload


def unpack_token(payload: bytes) -> tuple[str, bytes]:
    n = payload[0] | (payload[1] << 8)
    return payload[2:2 + n].decode(errors="replace"), payload[2 + n:]


def pack_error(code: int, message: str) -> bytes:
    return bytes((code,)) + message.encode()


def unpack_error(payload: bytes) -> tuple[int, str]:
    return payload[0], payload[1:].decode(errors="replace")


# A frame at least this large is not copied through the parse buffer: its payload is
# collected as the chunks the transport hands over and joined once (receive), or
# given to the transport as it is (send). A 1 MiB put was copied four times on the
# way in (into the buffer, growing it, the slice, bytes()); now once, by the join.
LARGE = 1 << 16


# Kernel buffer of each end of a worker's socketpair (capped by net.core.wmem_max).
# The default (~208 KiB) cut a 1 MiB request into five writes, each waiting for the
# core to read the previous one: five handoffs between the processes per put.
SOCKET_BUFFER = 4 << 20


def size_buffers(sock: socket.socket) -> None:
    """Let one write carry a large frame (call on both ends, before use)."""
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass   # the system's default then


def _copy_out(buf: bytearray, start: int, end: int) -> bytes:
    """bytes of buf[start:end], copied once (a bytearray slice copies twice)."""
    view = memoryview(buf)
    try:
        return bytes(view[start:end])
    finally:
        view.release()


class FrameProtocol(asyncio.Protocol):
    """Parses frames from the stream and batches outgoing ones per loop turn.

    Subclasses implement ``frame_received(call_id, method, kind, payload)``.
    """

    def __init__(self):
        self.transport = None
        self._buf = bytearray()
        self._out = bytearray()
        self._flush_scheduled = False
        self._loop = asyncio.get_event_loop()
        # A LARGE frame being received: its header fields, payload chunks, bytes missing.
        self._large = None
        self._parts: list = []
        self._missing = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        if self._large is not None:
            data = self._collect(data)
            if not data:
                return
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        unpack = HEADER.unpack_from
        try:
            while n - pos >= HSIZE:
                length, call_id, method, kind = unpack(buf, pos)
                end = pos + HSIZE + length
                if end > n:
                    if length >= LARGE:
                        self._large = (call_id, method, kind)
                        self._parts = [_copy_out(buf, pos + HSIZE, n)]
                        self._missing = end - n
                        pos = n
                    break
                if length >= LARGE:
                    payload = _copy_out(buf, pos + HSIZE, end)
                else:
                    payload = bytes(buf[pos + HSIZE:end])
                self.frame_received(call_id, method, kind, payload)
                pos = end
        finally:
            del buf[:pos]

    def _collect(self, data: bytes) -> bytes:
        """Add a chunk to the LARGE frame being received; once it is whole, hand it
        on. Returns what of ``data`` follows the frame."""
        missing = self._missing
        if len(data) < missing:
            self._parts.append(data)
            self._missing = missing - len(data)
            return b""
        self._parts.append(data[:missing] if len(data) > missing else data)
        payload = b"".join(self._parts)
        call_id, method, kind = self._large
        self._large, self._parts, self._missing = None, [], 0
        self.frame_received(call_id, method, kind, payload)
        return data[missing:]

    def frame_received(self, call_id: int, method: int, kind: int, payload: bytes):
        raise NotImplementedError

    def send(self, call_id: int, method: int, kind: int, payload: bytes) -> None:
        out = self._out
        out += HEADER.pack(len(payload), call_id, method, kind)
        if len(payload) >= LARGE:
            # Everything batched so far and then the payload itself (no copy into
            # out), in one writev.
            self._flush_scheduled = False
            out, self._out = self._out, bytearray()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.writelines((out, payload))
            return
        out += payload
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def flush_now(self) -> None:
        """Write what is batched now, not at the next loop turn."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, bytearray()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
