"""One HTTP/2 connection carrying many concurrent unary gRPC calls, as an asyncio
Protocol (over TCP or TLS).

What it honours of the peer: its SETTINGS (acked; MAX_CONCURRENT_STREAMS queues calls
beyond the limit, MAX_FRAME_SIZE splits DATA and header blocks, INITIAL_WINDOW_SIZE
sets each stream's send window), send-side flow control (a request larger than a
window waits for WINDOW_UPDATE), PING (acked), RST_STREAM and GOAWAY; and it pings a peer silent while calls wait
(keepalive). It advertises
the largest receive windows and refills the connection's as responses arrive.

How a call ends: its response message, or `CallError` (a gRPC status: the peer's
trailers, an HTTP status, a reset, or the connection dropping after the request may
have been sent: Unavailable), or `NotSent` when the request certainly was not
processed (not written before the connection went, above a GOAWAY's last stream id,
refused with REFUSED_STREAM): the caller may send it again elsewhere.
"""
from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Callable, Optional
from urllib.parse import unquote

from . import framing as h2

_FRAME = struct.Struct(">IBI")
_U32 = struct.Struct(">I")
_PREFIX = struct.Struct(">BI")

OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, \
    UNIMPLEMENTED, UNAVAILABLE, UNAUTHENTICATED, PERMISSION_DENIED = \
    0, 1, 2, 4, 8, 13, 12, 14, 16, 7

REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 7, 8, 11
RECV_REFILL = 1 << 24          # connection receive window given back in steps this big
# While calls wait and the peer has been silent this long, PING it; no answer within
# KEEPALIVE_TIMEOUT ends the connection (a peer that stopped without closing). Only
# with calls open and at most one per KEEPALIVE: etcd's policy (5 s minimum, none
# without streams) answers more with GOAWAY too_many_pings.
KEEPALIVE = 6.0
KEEPALIVE_TIMEOUT = 3.0
DEFAULT_MAX_FRAME = 16384

# HTTP status of a response without grpc-status -> gRPC status (as gRPC's
# http-grpc-status-mapping.md says).
_HTTP_TO_GRPC = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED,
                 404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE,
                 504: UNAVAILABLE}


class CallError(Exception):
    """A call ended with a gRPC status other than OK."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status = status
        self.message = message


class NotSent(Exception):
    """The request certainly was not processed by the peer; it may be sent again."""


class Call:
    """One unary call on a connection: request frames still to send, response bytes."""

    __slots__ = ("fut", "sid", "block", "data", "off", "window", "resp", "http", "timer")

    def __init__(self, fut: asyncio.Future, block: bytes, data: bytes):
        self.fut = fut
        self.sid = 0
        self.block = block       # HPACK header block
        self.data = data         # the length-prefixed gRPC message
        self.off = 0             # bytes of data sent
        self.window = 0          # stream send window
        self.resp = b""
        self.http = ""           # :status of the response headers
        self.timer = None


def _done(fut: asyncio.Future, result=None, exc: Optional[BaseException] = None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)


class Connection(asyncio.Protocol):
    def __init__(self, loop, max_recv: int, on_gone: Callable[["Connection"], None]):
        self.loop = loop
        self.max_recv = max_recv
        self.on_gone = on_gone            # called once when no new call may start here
        self.transport = None
        self.ready = loop.create_future()  # set on the peer's first SETTINGS
        self.ready.add_done_callback(_retrieve)
        self.usable = True
        self.lost = False
        self.error = "connection closed"
        self.next_sid = 1
        self.streams: dict = {}            # sid -> Call (opened, not finished)
        self.pending: deque = deque()      # calls waiting for a stream slot
        self.blocked: deque = deque()      # opened calls waiting for send window
        self.unflushed: list = []          # opened calls whose frames are not written yet
        self.out: list = []
        self._flush_at = None
        self.peer_max_streams = 1 << 31
        self.peer_window = h2.DEFAULT_WINDOW     # initial stream send window
        self.peer_max_frame = DEFAULT_MAX_FRAME
        self.send_window = h2.DEFAULT_WINDOW     # connection send window
        self.recv_unacked = 0
        self.hdec = h2.HeaderDecoder()
        self._rest = b""
        self._cont = None                  # (sid, flags, block) while CONTINUATION follows
        self.last_recv = loop.time()
        self._ka = None                    # keepalive timer
        self._ping_at = 0.0

    # --- calls -----------------------------------------------------------------
    def start(self, call: Call) -> None:
        """Send a call's request (now, or when a stream slot frees up)."""
        if not self.usable:
            raise NotSent(self.error)
        if len(self.streams) >= self.peer_max_streams:
            self.pending.append(call)
        else:
            self._open(call)
        self._schedule_flush()

    def cancel(self, call: Call) -> None:
        """The caller gave up on the call (deadline, cancellation): reset its stream."""
        if call.sid and self.streams.pop(call.sid, None) is not None:
            self.out.append(h2.frame(h2.RST_STREAM, 0, call.sid, _U32.pack(CANCEL)))
            self._schedule_flush()
            self._stream_closed()
        elif call in self.pending:
            self.pending.remove(call)

    def _open(self, call: Call) -> None:
        sid = call.sid = self.next_sid
        self.next_sid = sid + 2
        self.streams[sid] = call
        call.window = self.peer_window
        block, maxf, out = call.block, self.peer_max_frame, self.out
        if len(block) <= maxf:
            out.append(h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, sid, block))
        else:
            out.append(h2.frame(h2.HEADERS, 0, sid, block[:maxf]))
            for i in range(maxf, len(block), maxf):
                last = i + maxf >= len(block)
                out.append(h2.frame(h2.CONTINUATION, h2.FLAG_END_HEADERS if last else 0,
                                    sid, block[i:i + maxf]))
        self.unflushed.append(call)
        if not self._push(call):
            self.blocked.append(call)

    def _push(self, call: Call) -> bool:
        """Send as much of the request as the windows allow; False if some is left."""
        data, off = call.data, call.off
        total = len(data)
        while off < total:
            n = min(total - off, call.window, self.send_window, self.peer_max_frame)
            if n <= 0:
                call.off = off
                return False
            end = off + n
            self.out.append(h2.frame(h2.DATA, h2.FLAG_END_STREAM if end == total else 0,
                                     call.sid, data[off:end] if n < total else data))
            call.window -= n
            self.send_window -= n
            off = end
        call.off = off
        return True

    def _unblock(self) -> None:
        blocked, self.blocked = self.blocked, deque()
        while blocked:
            call = blocked.popleft()
            if call.sid in self.streams and not self._push(call):
                self.blocked.append(call)
                self.blocked.extend(blocked)
                return

    def _stream_closed(self) -> None:
        while self.pending and len(self.streams) < self.peer_max_streams and self.usable:
            self._open(self.pending.popleft())
        if not self.usable and not self.streams and not self.lost:
            self.transport.close()

    # --- output ----------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if self._flush_at is None:
            self._flush_at = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_at = None
        if self.out and not self.lost:
            self.transport.write(b"".join(self.out))
        self.out.clear()
        self.unflushed.clear()

    # --- protocol --------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self._ka = self.loop.call_later(KEEPALIVE, self._keepalive)
        h2.open_client(transport)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self._ka is not None:
            self._ka.cancel()
        if exc is not None:
            self.error = f"connection lost: {exc}"
        self._retire()
        _done(self.ready, exc=ConnectionError(self.error))
        unwritten = set(id(c) for c in self.unflushed)
        streams, self.streams = self.streams, {}
        for call in streams.values():
            if id(call) in unwritten:
                _done(call.fut, exc=NotSent(self.error))
            else:     # the request may have reached the peer: its outcome is unknown
                _done(call.fut, exc=CallError(UNAVAILABLE, self.error))
        self._refuse_pending()

    def _retire(self) -> None:
        if self.usable:
            self.usable = False
            self.on_gone(self)

    def _refuse_pending(self) -> None:
        pending, self.pending = self.pending, deque()
        for call in pending:
            _done(call.fut, exc=NotSent(self.error))

    def close(self) -> None:
        self._retire()
        if self.transport is not None and not self.lost:
            self.transport.write(h2.frame(h2.GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_recv = self.loop.time()
        if self._rest:
            data = self._rest + data
        n, pos = len(data), 0
        unpack = _FRAME.unpack_from
        streams = self.streams
        while n - pos >= 9:
            w, flags, sid = unpack(data, pos)
            length = w >> 8
            end = pos + 9 + length
            if end > n:
                break
            ftype = w & 0xFF
            if ftype == h2.DATA:
                self.recv_unacked += length
                call = streams.get(sid)
                if call is not None:
                    p, e = pos + 9, end
                    if flags & h2.FLAG_PADDED:
                        e -= data[p]
                        p += 1
                    if call.resp:       # a response over several frames
                        if type(call.resp) is bytes:
                            call.resp = bytearray(call.resp)
                        call.resp += data[p:e]
                    else:
                        call.resp = data[p:e]
                    if len(call.resp) > self.max_recv + 5:
                        self._fail(call, CallError(RESOURCE_EXHAUSTED, _too_big(
                            call.resp, self.max_recv)), reset=True)
                    elif flags & h2.FLAG_END_STREAM:
                        self._fail(call, CallError(
                            INTERNAL, "server closed the stream without sending trailers"))
            elif ftype == h2.HEADERS:
                p, e = pos + 9, end
                if flags & h2.FLAG_PADDED:
                    e -= data[p]
                    p += 1
                if flags & h2.FLAG_PRIORITY:
                    p += 5
                block = data[p:e]
                if flags & h2.FLAG_END_HEADERS:
                    self._headers(sid, flags, block)
                else:
                    self._cont = (sid, flags, bytearray(block))
            elif ftype == h2.CONTINUATION:
                if self._cont is not None:
                    csid, cflags, blk = self._cont
                    blk += data[pos + 9:end]
                    if flags & h2.FLAG_END_HEADERS:
                        self._cont = None
                        self._headers(csid, cflags, bytes(blk))
            else:
                self._control(ftype, flags, sid, data[pos + 9:end])
            pos = end
        self._rest = data[pos:] if pos < n else b""
        if self.recv_unacked >= RECV_REFILL:
            self.out.append(h2.window_update(0, self.recv_unacked))
            self.recv_unacked = 0
        if self.out:
            self.flush()

    def _headers(self, sid: int, flags: int, block: bytes) -> None:
        hdrs = self.hdec.decode(block)     # always: it keeps the HPACK table in step
        call = self.streams.get(sid)
        if call is None:
            return
        if not flags & h2.FLAG_END_STREAM:
            call.http = hdrs.get(":status", call.http)
            return
        gs = hdrs.get("grpc-status")
        http = hdrs.get(":status", call.http)
        if gs is None:
            code = int(http) if http.isdigit() else 0
            if code and code != 200:
                err = CallError(_HTTP_TO_GRPC.get(code, UNKNOWN),
                                f"Received http2 header with status: {code}")
            else:
                err = CallError(INTERNAL, "server closed the stream without grpc-status")
            self._fail(call, err)
            return
        status = int(gs) if gs.isdigit() else UNKNOWN
        if status != OK:
            msg = hdrs.get("grpc-message", "")
            self._fail(call, CallError(status, unquote(msg) if "%" in msg else msg))
            return
        resp = call.resp
        if len(resp) < 5:
            self._fail(call, CallError(UNIMPLEMENTED, "no response message"))
            return
        compressed, mlen = _PREFIX.unpack_from(resp)
        if compressed or len(resp) != 5 + mlen:
            self._fail(call, CallError(INTERNAL, "malformed or compressed response message"))
            return
        del self.streams[sid]
        if call.timer is not None:
            call.timer.cancel()
        _done(call.fut, bytes(resp[5:]))
        self._stream_closed()

    def _fail(self, call: Call, exc: BaseException, reset: bool = False) -> None:
        if self.streams.pop(call.sid, None) is None:
            return
        if reset:
            self.out.append(h2.frame(h2.RST_STREAM, 0, call.sid, _U32.pack(CANCEL)))
        if call.timer is not None:
            call.timer.cancel()
        _done(call.fut, exc=exc)
        self._stream_closed()

    def _control(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if ftype == h2.SETTINGS:
            if flags & h2.FLAG_ACK:
                return
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack_from(">HI", payload, i)
                if k == h2.SETTINGS_MAX_CONCURRENT_STREAMS:
                    self.peer_max_streams = v
                elif k == h2.SETTINGS_INITIAL_WINDOW_SIZE:
                    delta, self.peer_window = v - self.peer_window, v
                    for call in self.streams.values():
                        call.window += delta
                elif k == h2.SETTINGS_MAX_FRAME_SIZE:
                    self.peer_max_frame = v
            self.out.append(h2.settings_frame(ack=True))
            _done(self.ready)
            self._unblock()
            self._stream_closed()     # a larger MAX_CONCURRENT_STREAMS opens queued calls
        elif ftype == h2.PING:
            if not flags & h2.FLAG_ACK:
                self.out.append(h2.frame(h2.PING, h2.FLAG_ACK, 0, payload))
        elif ftype == h2.WINDOW_UPDATE:
            inc = _U32.unpack_from(payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
            else:
                call = self.streams.get(sid)
                if call is None:
                    return
                call.window += inc
            if self.blocked:
                self._unblock()
        elif ftype == h2.RST_STREAM:
            call = self.streams.get(sid)
            if call is not None:
                code = _U32.unpack_from(payload)[0]
                if code == REFUSED_STREAM:
                    self._fail(call, NotSent(f"stream refused by {self._peer()}"))
                else:
                    status = {CANCEL: CANCELLED, ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED}.get(
                        code, INTERNAL)
                    self._fail(call, CallError(
                        status, f"Received RST_STREAM with error code {code}"))
        elif ftype == h2.GOAWAY:
            last, code = struct.unpack_from(">II", payload)
            last &= 0x7FFFFFFF
            debug = payload[8:].decode("utf-8", "replace")
            self.error = f"{self._peer()} sent GOAWAY (error {code}{', ' + debug if debug else ''})"
            self._retire()
            for s in [s for s in self.streams if s > last]:   # never processed
                self._fail(self.streams[s], NotSent(self.error))
            self._refuse_pending()
            if not self.streams and not self.lost:
                self.transport.close()

    def _keepalive(self) -> None:
        self._ka = None
        if self.lost:
            return
        now = self.loop.time()
        if self.streams and now - self.last_recv >= KEEPALIVE:
            self._ping_at = now
            self.out.append(h2.frame(h2.PING, 0, 0, b"kvcoreka"))
            self.flush()
            self.loop.call_later(KEEPALIVE_TIMEOUT, self._ping_check)
        self._ka = self.loop.call_later(KEEPALIVE, self._keepalive)

    def _ping_check(self) -> None:
        if not self.lost and self.last_recv < self._ping_at:
            self.error = f"keepalive ping to {self._peer()} not answered"
            self._retire()
            self.transport.abort()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "the server"


def _too_big(resp: bytes, limit: int) -> str:
    size = _PREFIX.unpack_from(resp)[1] if len(resp) >= 5 else len(resp)
    # grpc-go's client words, as etcd's grpc-proxy answers (not grpcio's).
    return f"grpc: received message larger than max ({size} vs. {limit})"


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()
