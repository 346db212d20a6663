"""Minimal HTTP/2 framing for unary and streaming gRPC, shared by the proxy's upstream
client (kvcore.h2client) and the load client and trivial server (bench/).

Only what gRPC over cleartext HTTP/2 (prior knowledge) needs: frame headers, a
stateless HPACK encoder for request/response header blocks that never change (so
they can be encoded once), and a caching wrapper around the `hpack` decoder for the
blocks a peer sends (grpc-go indexes its headers in the dynamic table, so after the
first few responses every block is a handful of indexed bytes and repeats exactly).
"""
from __future__ import annotations

import struct

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)

FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

MAX_WINDOW = 2 ** 31 - 1
DEFAULT_WINDOW = 65535

# length(24) + type(8) packed as one 32-bit word, then flags(8), stream id(32)
_FRAME = struct.Struct(">IBI")
_U32 = struct.Struct(">I")

GRPC_STATUS_NAMES = {
    0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded",
    5: "NotFound", 6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted",
    9: "FailedPrecondition", 10: "Aborted", 11: "OutOfRange", 12: "Unimplemented",
    13: "Internal", 14: "Unavailable", 15: "DataLoss", 16: "Unauthenticated",
}


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _FRAME.pack((len(payload) << 8) | ftype, flags, stream_id) + payload


def frame_prefix(ftype: int, flags: int, length: int) -> bytes:
    """The first 5 bytes of a frame header; append the 4-byte stream id and payload."""
    return _U32.pack((length << 8) | ftype) + bytes([flags])


def settings_frame(settings: dict[int, int] | None = None, ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
    return frame(SETTINGS, FLAG_ACK if ack else 0, 0, payload)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def grpc_message(payload: bytes) -> bytes:
    """gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + _U32.pack(len(payload)) + payload


def open_client(transport) -> None:
    """A gRPC client's first bytes on a new connection (TCP_NODELAY on): the preface,
    its settings (no push, the largest stream window, 1 MiB header lists) and the
    connection window opened as far."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        import socket
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    transport.write(PREFACE + settings_frame({
        SETTINGS_ENABLE_PUSH: 0,
        SETTINGS_INITIAL_WINDOW_SIZE: MAX_WINDOW,
        SETTINGS_MAX_HEADER_LIST_SIZE: 1 << 20,
    }) + window_update(0, MAX_WINDOW - DEFAULT_WINDOW))


# --- HPACK, stateless encoding ------------------------------------------------------

# Static table entries (RFC 7541 appendix A) used below.
_STATIC_FULL = {(":method", "POST"): 3, (":scheme", "http"): 6, (":status", "200"): 8}
_STATIC_NAME = {":authority": 1, ":path": 4, "content-type": 31, "user-agent": 58}


def hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(s: bytes) -> bytes:
    return hpack_int(len(s), 7, 0) + s


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Encode without touching any dynamic table (indexed static entries, literals
    without indexing, no Huffman), so the block can be reused on any connection."""
    out = []
    for name, value in headers:
        idx = _STATIC_FULL.get((name, value))
        if idx:
            out.append(hpack_int(idx, 7, 0x80))
            continue
        nidx = _STATIC_NAME.get(name)
        if nidx:
            out.append(hpack_int(nidx, 4, 0x00))
        else:
            out.append(b"\x00" + _hpack_str(name.encode()))
        out.append(_hpack_str(value.encode()))
    return b"".join(out)


def request_header_block(path: str, authority: str, extra: list[tuple[str, str]] = ()) -> bytes:
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", authority), ("content-type", "application/grpc"),
            ("te", "trailers")]
    hdrs.extend(extra)
    return encode_headers(hdrs)


class HeaderDecoder:
    """HPACK decoder for one connection that remembers what each header block meant.

    A block is served from the cache only while the dynamic table has not changed
    since it was cached, and only blocks that cannot change the table themselves
    (no literal-with-indexing, no size update) are cached; any block that changes the
    table empties the cache. So the answer is always what a full decode would give.
    """

    __slots__ = ("_dec", "_cache")

    def __init__(self):
        self._dec = hpack.Decoder()
        self._dec.max_allowed_table_size = 65536
        self._cache: dict[bytes, dict] = {}

    def decode(self, block: bytes) -> dict:
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        table = self._dec.header_table
        entries = table.dynamic_entries
        before = (len(entries), id(entries[0]) if entries else 0, table.maxsize)
        raw = self._dec.decode(block, raw=True)
        result = {}
        for k, v in raw:
            result[k.decode("latin-1")] = v.decode("utf-8", "replace")
        after = (len(entries), id(entries[0]) if entries else 0, table.maxsize)
        if after != before:
            self._cache.clear()
        else:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[bytes(block)] = result
        return result
