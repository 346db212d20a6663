"""A trivial gRPC server: answers every unary call at once with one fixed response.

Used to measure the load generator's own ceiling (acceptance 1) and in tests. It does
not look at the request: any stream that ends gets response headers, one fixed
message and `grpc-status: 0` trailers, all pre-encoded; only the stream id changes.

    python -m bench.trivial_server --port 50051 [--workers 2] [--response-size 64]

Also `nghttpd_command()` builds an nghttpd (C, libnghttp2) invocation that serves the
same fixed gRPC response, for a server that costs less CPU than this one.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import sys

import uvloop

from kvcore.h2client import framing as h2

_FRAME = struct.Struct(">IBI")
_U32 = struct.Struct(">I")


def fixed_response_parts(message: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    """(headers prefix, header block, data prefix, data payload, trailers prefix, trailers block)."""
    hb = h2.encode_headers([(":status", "200"), ("content-type", "application/grpc")])
    data = h2.grpc_message(message)
    tb = h2.encode_headers([("grpc-status", "0"), ("grpc-message", "")])
    return (h2.frame_prefix(h2.HEADERS, h2.FLAG_END_HEADERS, len(hb)), hb,
            h2.frame_prefix(h2.DATA, 0, len(data)), data,
            h2.frame_prefix(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, len(tb)), tb)


class TrivialProtocol(asyncio.Protocol):
    def __init__(self, parts):
        self.parts = parts
        self.rest = b""
        self.preface_left = len(h2.PREFACE)
        self.send_window = h2.DEFAULT_WINDOW
        self.recv_unacked = 0
        self.queued: list[int] = []
        self.resp_len = len(parts[3])

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(h2.settings_frame({h2.SETTINGS_MAX_CONCURRENT_STREAMS: 1 << 20,
                                           h2.SETTINGS_INITIAL_WINDOW_SIZE: h2.MAX_WINDOW})
                        + h2.window_update(0, h2.MAX_WINDOW - h2.DEFAULT_WINDOW))

    def data_received(self, data):
        if self.rest:
            data = self.rest + data
        pos = 0
        if self.preface_left:
            k = min(self.preface_left, len(data))
            self.preface_left -= k
            pos = k
        n = len(data)
        out = []
        hp, hb, dp, dd, tp, tb = self.parts
        unpack = _FRAME.unpack_from
        while n - pos >= 9:
            w, flags, sid = unpack(data, pos)
            end = pos + 9 + (w >> 8)
            if end > n:
                break
            ftype = w & 0xFF
            if ftype == 0 or ftype == 1:
                if ftype == 0:
                    self.recv_unacked += w >> 8
                if flags & 1:
                    if self.send_window >= self.resp_len:
                        self.send_window -= self.resp_len
                        sb = _U32.pack(sid)
                        out += (hp, sb, hb, dp, sb, dd, tp, sb, tb)
                    else:
                        self.queued.append(sid)
            elif ftype == h2.SETTINGS:
                if not flags & 1:
                    out.append(h2.settings_frame(ack=True))
            elif ftype == h2.PING:
                if not flags & 1:
                    out.append(h2.frame(h2.PING, 1, 0, data[pos + 9:end]))
            elif ftype == h2.WINDOW_UPDATE and sid == 0:
                self.send_window += _U32.unpack_from(data, pos + 9)[0] & 0x7FFFFFFF
                while self.queued and self.send_window >= self.resp_len:
                    self.send_window -= self.resp_len
                    sb = _U32.pack(self.queued.pop(0))
                    out += (hp, sb, hb, dp, sb, dd, tp, sb, tb)
            elif ftype == h2.GOAWAY:
                self.transport.close()
                return
            pos = end
        self.rest = data[pos:] if pos < n else b""
        if self.recv_unacked > (1 << 30):
            out.append(h2.window_update(0, self.recv_unacked))
            self.recv_unacked = 0
        if out:
            self.transport.write(b"".join(out))


def _serve(sock: socket.socket, message: bytes):
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    parts = fixed_response_parts(message)
    srv = loop.run_until_complete(loop.create_server(lambda: TrivialProtocol(parts), sock=sock))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    finally:
        srv.close()


def listen_socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(1024)
    return s


def default_message(size: int) -> bytes:
    """A valid RangeResponse (one key-value) of about `size` bytes."""
    from kvcore.api import kv_pb2, rpc_pb2
    r = rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(cluster_id=1, member_id=1,
                                                            revision=1, raft_term=1),
                              kvs=[kv_pb2.KeyValue(key=b"foo", create_revision=1,
                                                   mod_revision=1, version=1)], count=1)
    base = len(r.SerializeToString())
    r.kvs[0].value = b"x" * max(0, size - base - 2)
    return r.SerializeToString()


def nghttpd_command(port: int, docroot: str, message: bytes, paths: list[str]) -> list[str]:
    """Write the fixed gRPC response for each path under docroot; return nghttpd's argv.

    nghttpd answers POSTs with the file at the path and the given trailer; it adds
    no content-type for files without an extension, which gRPC load clients ignore.
    """
    body = h2.grpc_message(message)
    for p in paths:
        f = os.path.join(docroot, p.lstrip("/"))
        os.makedirs(os.path.dirname(f), exist_ok=True)
        with open(f, "wb") as fh:
            fh.write(body)
    return ["nghttpd", "--no-tls", "-d", docroot, "--trailer=grpc-status: 0",
            "-a", "127.0.0.1", str(port)]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.trivial_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=50051)
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    ap.add_argument("--response-size", type=int, default=32, help="response message bytes")
    a = ap.parse_args(argv)
    msg = default_message(a.response_size)
    children = []
    for _ in range(a.workers - 1):
        pid = os.fork()
        if pid == 0:
            _serve(listen_socket(a.host, a.port), msg)
            os._exit(0)
        children.append(pid)
    print(f"trivial gRPC server on {a.host}:{a.port} ({a.workers} process(es))", flush=True)
    try:
        _serve(listen_socket(a.host, a.port), msg)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
