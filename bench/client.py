"""A lean HTTP/2 gRPC client on asyncio/uvloop, built for load generation.

One `Conn` is one HTTP/2 connection. The unary hot path keeps only a start time per
in-flight stream: a request is four pre-built byte strings around a 4-byte stream
id, responses are parsed frame by frame without decoding bodies, and all writes
produced while handling one read are sent with one `transport.write`. Streams that
need their messages (setup calls, watch, lease keep-alive) use a `Stream` handler.

Why not grpcio or libnghttp2: see bench/README.md (measured there).
"""
from __future__ import annotations

import asyncio
import struct
from array import array
import time
from collections import Counter
from urllib.parse import urlsplit

from kvcore.h2client import framing as h2

_FRAME = struct.Struct(">IBI")
_U32 = struct.Struct(">I")
_now = time.monotonic_ns

RECV_REFILL = 1 << 30


class EndpointError(Exception):
    """The endpoint cannot be used (refused, not HTTP/2, closed, timed out)."""


class CallError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{h2.GRPC_STATUS_NAMES.get(status, status)}: {message}")


def parse_endpoint(ep: str) -> tuple[str, int]:
    """'127.0.0.1:2379', 'http://127.0.0.1:2379' or 'localhost:2379' → (host, port)."""
    ep = ep.strip()
    if not ep:
        raise ValueError("empty endpoint")
    if "://" not in ep:
        ep = "http://" + ep
    u = urlsplit(ep)
    if u.scheme == "https":
        raise ValueError(f"{ep}: TLS endpoints are not supported by this tool (use http://)")
    if u.scheme not in ("http", "unix") or u.scheme == "unix":
        raise ValueError(f"{ep}: unsupported scheme {u.scheme!r} (use host:port or http://host:port)")
    try:
        port = u.port
    except ValueError as e:
        raise ValueError(f"{ep}: bad port ({e})") from None
    if not u.hostname or port is None:
        raise ValueError(f"{ep}: expected host:port")
    if u.path not in ("", "/"):
        raise ValueError(f"{ep}: an endpoint has no path")
    return u.hostname, port


class Stream:
    """Handler of one stream whose messages matter."""

    def on_message(self, msg: bytes) -> None:  # one gRPC message payload
        pass

    def on_close(self, status: int, message: str) -> None:
        pass


class _CallStream(Stream):
    def __init__(self, fut: asyncio.Future):
        self.fut = fut
        self.msgs: list[bytes] = []

    def on_message(self, msg):
        self.msgs.append(msg)

    def on_close(self, status, message):
        if not self.fut.done():
            if status == 0:
                self.fut.set_result(self.msgs[0] if self.msgs else b"")
            else:
                self.fut.set_exception(CallError(status, message))


class Load:
    """The unary load shared by the connections of one process (closed loop)."""

    def __init__(self, bodies: list[bytes], total: int, deadline_ns: int, rate: float = 0.0):
        self.bodies = bodies
        self.nbodies = len(bodies)
        self.remaining = total
        self.issued = 0
        self.deadline_ns = deadline_ns
        self.lat = array("q")   # latencies in ns; 8 bytes each
        self.ok = 0
        self.errors: Counter = Counter()
        self.inflight = 0
        self.done: asyncio.Future | None = None
        self.rate_interval = int(1e9 / rate) if rate and rate > 0 else 0
        self.next_ns = 0
        self.waiting: list = []
        self.timer = None
        self.open_conns = 0
        self.t_first = 0
        self.t_last = 0

    def check_done(self):
        if self.inflight == 0 and (self.remaining <= 0 or _now() >= self.deadline_ns
                                   or self.done_forced) and not self.waiting:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)

    done_forced = False

    def finish_early(self):
        self.done_forced = True
        self.remaining = 0
        self.waiting.clear()
        self.check_done()


class Conn(asyncio.Protocol):
    def __init__(self, authority: str, load: Load | None = None,
                 header_block: bytes = b"", loop=None):
        self.authority = authority
        self.load = load
        self.loop = loop or asyncio.get_event_loop()
        self.transport = None
        self._rest = b""
        self.hdec = h2.HeaderDecoder()
        self.out: list[bytes] = []
        self.next_sid = 1
        self.inflight: dict[int, int] = {}
        self.streams: dict[int, Stream] = {}
        self._stream_status: dict[int, str] = {}
        self._cont: tuple | None = None
        self.send_window = h2.DEFAULT_WINDOW
        self.peer_initial_window = h2.DEFAULT_WINDOW
        self.peer_max_streams = 1 << 31
        self.stream_send_windows: dict[int, int] = {}
        self.recv_unacked = 0
        self.stream_recv_unacked: dict[int, int] = {}
        self.stalled = 0
        self.ready = self.loop.create_future()
        self.ready.add_done_callback(_retrieve)
        self.closed = self.loop.create_future()
        self.error: str | None = None
        self.goaway = False
        self.got_bytes = False
        self.set_unary(header_block)

    # --- setup ---------------------------------------------------------------
    def set_unary(self, header_block: bytes):
        self.hblock = header_block
        self.hpre = h2.frame_prefix(h2.HEADERS, h2.FLAG_END_HEADERS, len(header_block))
        self._dpre: dict[int, bytes] = {}

    def connection_made(self, transport):
        self.transport = transport
        if self.load is not None:
            self.load.open_conns += 1
        h2.open_client(transport)

    def connection_lost(self, exc):
        if self.error is None:
            self.error = f"connection closed by server ({exc})" if exc else "connection closed by server"
        self._fail_all(self.error)
        load = self.load
        if load is not None:
            load.open_conns -= 1
            if load.open_conns <= 0 and load.remaining > 0:
                # no connection left to carry the rest: stop instead of waiting for the limit
                load.errors[f"not sent: every connection closed ({self.error})"] += load.remaining
                load.finish_early()
        if not self.ready.done():
            self.ready.set_exception(EndpointError(self.error))
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail_all(self, why: str):
        load = self.load
        if self.inflight and load is not None:
            load.errors[why] += len(self.inflight)
            load.inflight -= len(self.inflight)
            self.inflight.clear()
            load.check_done()
        for sid, st in list(self.streams.items()):
            st.on_close(14, why)
        self.streams.clear()

    def close(self):
        """Close from our side: streams still open end silently (not counted as errors)."""
        self.streams.clear()
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.write(h2.frame(h2.GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
            except Exception:
                pass
            self.transport.close()

    def flush(self):
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    # --- unary hot path --------------------------------------------------------
    def issue(self, now: int) -> bool:
        """Start one request of the shared load on this connection."""
        load = self.load
        body = load.bodies[load.issued % load.nbodies]
        n = len(body)
        if self.send_window < n or len(self.inflight) + len(self.streams) >= self.peer_max_streams:
            self.stalled += 1
            return False
        load.issued += 1
        load.remaining -= 1
        load.inflight += 1
        self.send_window -= n
        sid = self.next_sid
        self.next_sid = sid + 2
        sb = _U32.pack(sid)
        dpre = self._dpre.get(n)
        if dpre is None:
            dpre = self._dpre[n] = h2.frame_prefix(h2.DATA, h2.FLAG_END_STREAM, n)
        self.out += (self.hpre, sb, self.hblock, dpre, sb, body)
        self.inflight[sid] = now
        return True

    def next_request(self, now: int):
        load = self.load
        if load.remaining <= 0 or now >= load.deadline_ns:
            return
        if load.rate_interval:
            if now < load.next_ns:
                load.waiting.append(self)
                if load.timer is None:
                    load.timer = self.loop.call_at(
                        self.loop.time() + (load.next_ns - now) / 1e9, _rate_wake, load)
                return
            load.next_ns = max(load.next_ns + load.rate_interval, now - 10 * load.rate_interval)
        self.issue(now)

    # --- streams with handlers ---------------------------------------------------
    def open_stream(self, header_block: bytes, handler: Stream, first: bytes | None = None,
                    end: bool = False) -> int:
        sid = self.next_sid
        self.next_sid = sid + 2
        self.streams[sid] = handler
        self.stream_send_windows[sid] = self.peer_initial_window
        flags = h2.FLAG_END_HEADERS
        if first is None and end:
            flags |= h2.FLAG_END_STREAM
        self.out.append(h2.frame(h2.HEADERS, flags, sid, header_block))
        if first is not None:
            self.send(sid, first, end)
        return sid

    def send(self, sid: int, msg: bytes, end: bool = False):
        """Send one gRPC message (already length-prefixed) on an open stream."""
        self.send_window -= len(msg)
        if sid in self.stream_send_windows:
            self.stream_send_windows[sid] -= len(msg)
        self.out.append(h2.frame(h2.DATA, h2.FLAG_END_STREAM if end else 0, sid, msg))

    async def call(self, header_block: bytes, body: bytes, timeout: float = 10.0) -> bytes:
        """One unary call; returns the response message (bytes) or raises CallError."""
        fut = self.loop.create_future()
        self.open_stream(header_block, _CallStream(fut), h2.grpc_message(body), end=True)
        self.flush()
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise EndpointError(f"no answer from {self.authority} within {timeout:g}s") from None

    # --- input -------------------------------------------------------------------
    def data_received(self, data: bytes):
        now = _now()
        if self._rest:
            data = self._rest + data
        elif not self.got_bytes:
            self.got_bytes = True
            if len(data) >= 4 and (data[3] != h2.SETTINGS):
                self._bad_peer(data)
                return
        n = len(data)
        pos = 0
        unpack = _FRAME.unpack_from
        inflight = self.inflight
        streams = self.streams
        hcache = self.hdec._cache
        hdecode = self.hdec.decode
        load = self.load
        lat_append = load.lat.append if load is not None else None
        completed = 0
        recv = 0
        while n - pos >= 9:
            w, flags, sid = unpack(data, pos)
            length = w >> 8
            end = pos + 9 + length
            if end > n:
                break
            ftype = w & 0xFF
            if ftype == 0:  # DATA
                recv += length
                if streams:
                    st = streams.get(sid)
                    if st is not None:
                        self._stream_data(sid, st, data, pos + 9, end, flags)
                if flags & 1:
                    self._end_stream(sid, None)
            elif ftype == 1:  # HEADERS
                if flags & 0x28:  # PADDED or PRIORITY
                    p, e = pos + 9, end
                    if flags & h2.FLAG_PADDED:
                        e -= data[p]
                        p += 1
                    if flags & h2.FLAG_PRIORITY:
                        p += 5
                    block = data[p:e]
                else:
                    block = data[pos + 9:end]
                if flags & h2.FLAG_END_HEADERS:
                    hdrs = hcache.get(block)
                    if hdrs is None:
                        hdrs = hdecode(block)
                    if flags & 1:
                        if sid in inflight and hdrs.get("grpc-status") == "0":
                            # hot path: successful unary call
                            lat_append(now - inflight.pop(sid))
                            completed += 1
                        else:
                            self._end_stream(sid, hdrs)
                    else:
                        st = hdrs.get(":status")
                        if st != "200":   # kept only when it explains a failure later
                            self._stream_status[sid] = st or ""
                else:
                    self._cont = (sid, flags, bytearray(block))
            elif ftype == 9:  # CONTINUATION
                if self._cont is not None:
                    csid, cflags, blk = self._cont
                    blk += data[pos + 9:end]
                    if flags & h2.FLAG_END_HEADERS:
                        self._cont = None
                        hdrs = self.hdec.decode(bytes(blk))
                        if cflags & 1:
                            self._end_stream(csid, hdrs)
                        else:
                            self._stream_status[csid] = hdrs.get(":status", "")
            else:
                self._control(ftype, flags, sid, data[pos + 9:end])
            pos = end
        self._rest = data[pos:] if pos < n else b""
        if recv:
            self.recv_unacked += recv
        if completed:
            load.ok += completed
            load.inflight -= completed
            load.t_last = now
            if load.remaining > 0 and now < load.deadline_ns:
                k, self.stalled = completed + self.stalled, 0
                for _ in range(k):
                    self.next_request(now)
            elif load.inflight == 0:
                load.check_done()
        if self.recv_unacked >= RECV_REFILL:
            self.out.append(h2.window_update(0, self.recv_unacked))
            self.recv_unacked = 0
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def _bad_peer(self, data: bytes):
        snippet = data[:60].decode("latin-1").split("\r\n")[0]
        self.error = (f"{self.authority} did not answer with HTTP/2 (gRPC); "
                      f"first bytes: {snippet!r}")
        if not self.ready.done():
            self.ready.set_exception(EndpointError(self.error))
        self.transport.close()

    def _stream_data(self, sid, st, data, p, e, flags):
        if flags & h2.FLAG_PADDED:
            e -= data[p]
            p += 1
        # Several messages may share one DATA frame (a batch): walk them by offset
        # (slicing the rest off after each message copied the frame once per message).
        rest = getattr(st, "_h2buf", b"")
        if rest:
            buf, q, end = rest + data[p:e], 0, len(rest) + e - p
        else:
            buf, q, end = data, p, e
        on_message = st.on_message
        unpack = _U32.unpack_from
        while end - q >= 5:
            mend = q + 5 + unpack(buf, q + 1)[0]
            if mend > end:
                break
            on_message(buf[q + 5:mend])
            q = mend
        st._h2buf = buf[q:end] if q < end else b""
        u = self.stream_recv_unacked.get(sid, 0) + (e - p)
        if u >= RECV_REFILL:
            self.out.append(h2.window_update(sid, u))
            u = 0
        self.stream_recv_unacked[sid] = u

    def _end_stream(self, sid: int, hdrs: dict | None):
        if hdrs is None:
            status, msg = 13, "stream ended without gRPC trailers"
        else:
            gs = hdrs.get("grpc-status")
            if gs is None:
                http = hdrs.get(":status") or self._stream_status.get(sid, "?")
                status, msg = 13, f"HTTP status {http} without grpc-status"
            else:
                try:
                    status = int(gs)
                except ValueError:
                    status = 2
                msg = _unpercent(hdrs.get("grpc-message", ""))
        self._stream_status.pop(sid, None)
        self._finish(sid, status, msg)

    def _finish(self, sid: int, status: int, msg: str):
        t0 = self.inflight.pop(sid, None)
        load = self.load
        if t0 is not None:
            load.inflight -= 1
            if status == 0:
                now = _now()
                load.lat.append(now - t0)
                load.ok += 1
            else:
                load.errors[f"{h2.GRPC_STATUS_NAMES.get(status, status)}: {msg}"] += 1
            now = _now()
            load.t_last = now
            self.next_request(now)
            load.check_done()
            return
        st = self.streams.pop(sid, None)
        if st is not None:
            self.stream_send_windows.pop(sid, None)
            self.stream_recv_unacked.pop(sid, None)
            st.on_close(status, msg)

    def _control(self, ftype, flags, sid, payload):
        if ftype == h2.SETTINGS:
            if flags & h2.FLAG_ACK:
                return
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack_from(">HI", payload, i)
                if k == h2.SETTINGS_MAX_CONCURRENT_STREAMS:
                    self.peer_max_streams = v
                elif k == h2.SETTINGS_INITIAL_WINDOW_SIZE:
                    delta = v - self.peer_initial_window
                    self.peer_initial_window = v
                    for s in self.stream_send_windows:
                        self.stream_send_windows[s] += delta
            self.out.append(h2.settings_frame(ack=True))
            if not self.ready.done():
                self.ready.set_result(None)
        elif ftype == h2.PING:
            if not flags & h2.FLAG_ACK:
                self.out.append(h2.frame(h2.PING, h2.FLAG_ACK, 0, payload))
        elif ftype == h2.WINDOW_UPDATE:
            inc = _U32.unpack_from(payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_window += inc
                if self.stalled and self.load is not None:
                    k, self.stalled = self.stalled, 0
                    now = _now()
                    for _ in range(k):
                        self.issue(now)
            elif sid in self.stream_send_windows:
                self.stream_send_windows[sid] += inc
        elif ftype == h2.RST_STREAM:
            code = _U32.unpack_from(payload)[0]
            self._finish(sid, 14 if code == 7 else 13, f"stream reset by server (HTTP/2 error {code})")
        elif ftype == h2.GOAWAY:
            last, code = struct.unpack_from(">II", payload)
            last &= 0x7FFFFFFF
            debug = payload[8:].decode("utf-8", "replace")
            self.goaway = True
            self.error = f"server sent GOAWAY (error {code}{', ' + debug if debug else ''})"
            for s in [s for s in self.inflight if s > last] + [s for s in self.streams if s > last]:
                self._finish(s, 14, self.error)
            if self.load is not None:
                self.load.remaining = 0
                self.load.check_done()


def _retrieve(fut):
    if not fut.cancelled():
        fut.exception()


def _rate_wake(load: Load):
    load.timer = None
    now = _now()
    waiting, load.waiting = load.waiting, []
    touched = set()
    for conn in waiting:
        conn.next_request(now)
        touched.add(conn)
    for c in touched:
        c.flush()
    load.check_done()


def _unpercent(s: str) -> str:
    if "%" not in s:
        return s
    from urllib.parse import unquote
    return unquote(s)


async def connect(host: str, port: int, load: Load | None = None, header_block: bytes = b"",
                  timeout: float = 5.0) -> Conn:
    loop = asyncio.get_running_loop()
    authority = f"{host}:{port}"
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: Conn(authority, load, header_block, loop), host, port),
            timeout)
    except asyncio.TimeoutError:
        raise EndpointError(f"cannot connect to {authority}: timed out after {timeout:g}s") from None
    except ConnectionRefusedError:
        raise EndpointError(f"cannot connect to {authority}: connection refused "
                            f"(is the server running?)") from None
    except OSError as e:
        raise EndpointError(f"cannot connect to {authority}: {e.strerror or e}") from None
    try:
        await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
    except asyncio.TimeoutError:
        conn.close()
        raise EndpointError(f"{authority} accepted the connection but sent no HTTP/2 "
                            f"settings within {timeout:g}s (not a gRPC endpoint?)") from None
    return conn
