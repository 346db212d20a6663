"""kvcore.h2client against a scripted peer: the peer's frames are fed to the
connection and the frames it writes are read back (no sockets), except for the
endpoint tests at the end, which use a tiny scripted server on 127.0.0.1."""
import asyncio
import struct

import hpack
import pytest

from kvcore.h2client import CallError, NotSent, UnaryClient
from kvcore.h2client import framing as h2
from kvcore.h2client.connection import Call, Connection


class Transport:
    def __init__(self):
        self.buf = bytearray()
        self.closed = False

    def write(self, b):
        self.buf += b

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def get_extra_info(self, name, default=None):
        return default


def frames(buf: bytes) -> list:
    """[(type, flags, stream id, payload)] of what the connection wrote."""
    out, pos = [], 0
    if buf.startswith(h2.PREFACE):
        pos = len(h2.PREFACE)
    while pos + 9 <= len(buf):
        w, flags, sid = struct.unpack_from(">IBI", buf, pos)
        n = w >> 8
        out.append((w & 0xFF, flags, sid & 0x7FFFFFFF, bytes(buf[pos + 9:pos + 9 + n])))
        pos += 9 + n
    return out


class Peer:
    """A connection and what a server would send it."""

    def __init__(self, settings=None, max_recv=4 << 20):
        self.loop = asyncio.get_running_loop()
        self.gone = []
        self.conn = Connection(self.loop, max_recv, self.gone.append)
        self.t = Transport()
        self.conn.connection_made(self.t)
        self.enc = hpack.Encoder()
        self.feed(h2.settings_frame(settings or {}))

    def feed(self, *chunks):
        self.conn.data_received(b"".join(chunks))

    def take(self) -> list:
        self.conn.flush()
        fs = frames(self.t.buf)
        self.t.buf.clear()
        return fs

    def call(self, body=b"req") -> Call:
        c = Call(self.loop.create_future(), h2.request_header_block("/p", "a"),
                 h2.grpc_message(body))
        self.conn.start(c)
        return c

    def headers(self, sid, hdrs, end=False):
        return h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS | (h2.FLAG_END_STREAM if end else 0),
                        sid, self.enc.encode(hdrs))

    def respond(self, sid, msg=b"resp", status="0", message=None):
        trailers = [("grpc-status", status)] + ([("grpc-message", message)] if message else [])
        return (self.headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                + h2.frame(h2.DATA, 0, sid, h2.grpc_message(msg))
                + self.headers(sid, trailers, end=True))


def data_of(fs, sid):
    return b"".join(p for t, _, s, p in fs if t == h2.DATA and s == sid)


def run(coro):
    return asyncio.run(coro)


def test_settings_acked_and_a_call_answered():
    async def main():
        p = Peer()
        assert p.conn.ready.done()
        fs = p.take()
        assert (h2.SETTINGS, h2.FLAG_ACK, 0, b"") in fs
        c = p.call(b"hello")
        fs = p.take()
        assert [t for t, *_ in fs] == [h2.HEADERS, h2.DATA]
        assert fs[1][1] & h2.FLAG_END_STREAM and data_of(fs, 1) == h2.grpc_message(b"hello")
        p.feed(p.respond(1, b"world"))
        assert await c.fut == b"world"
        assert not p.conn.streams
    run(main())


def test_large_request_split_by_frame_size_and_waits_for_window():
    async def main():
        p = Peer({h2.SETTINGS_MAX_FRAME_SIZE: 16384})
        p.take()
        body = bytes(range(256)) * 600                    # 153,600 bytes > 65,535 window
        c = p.call(body)
        fs = p.take()
        sent = [x for x in fs if x[0] == h2.DATA]
        assert all(len(x[3]) <= 16384 for x in sent)
        assert sum(len(x[3]) for x in sent) == 65535      # the default windows
        assert not any(x[1] & h2.FLAG_END_STREAM for x in sent)
        p.feed(h2.window_update(0, 100000))               # the stream window still blocks
        assert not [x for x in p.take() if x[0] == h2.DATA]
        p.feed(h2.window_update(1, 100000))
        fs = p.take()
        rest = data_of(fs, 1)
        assert len(rest) == len(body) + 5 - 65535
        assert [x for x in fs if x[0] == h2.DATA][-1][1] & h2.FLAG_END_STREAM
        assert not c.fut.done()
    run(main())


def test_initial_window_change_applies_to_open_streams():
    async def main():
        p = Peer({h2.SETTINGS_INITIAL_WINDOW_SIZE: 10})
        p.take()
        p.call(b"x" * 100)
        assert len(data_of(p.take(), 1)) == 10
        p.feed(h2.settings_frame({h2.SETTINGS_INITIAL_WINDOW_SIZE: 1000}))
        assert len(data_of(p.take(), 1)) == 95
    run(main())


def test_max_concurrent_streams_queues_calls():
    async def main():
        p = Peer({h2.SETTINGS_MAX_CONCURRENT_STREAMS: 1})
        p.take()
        a, b = p.call(b"a"), p.call(b"b")
        fs = p.take()
        assert {s for _, _, s, _ in fs} == {1}
        p.feed(p.respond(1, b"A"))
        fs = p.take()
        assert data_of(fs, 3) == h2.grpc_message(b"b")
        p.feed(p.respond(3, b"B"))
        assert (await a.fut, await b.fut) == (b"A", b"B")
    run(main())


def test_trailers_only_and_percent_decoded_message():
    async def main():
        p = Peer()
        c = p.call()
        p.feed(p.headers(1, [(":status", "200"), ("grpc-status", "9"),
                             ("grpc-message", "etcdserver: 100%25 sure %E2%9C%93")], end=True))
        with pytest.raises(CallError) as e:
            await c.fut
        assert (e.value.status, e.value.message) == (9, "etcdserver: 100% sure \u2713")
    run(main())


def test_http_status_without_grpc_status():
    async def main():
        p = Peer()
        c = p.call()
        p.feed(p.headers(1, [(":status", "503")], end=True))
        with pytest.raises(CallError) as e:
            await c.fut
        assert e.value.status == 14
    run(main())


def test_ping_acked():
    async def main():
        p = Peer()
        p.take()
        p.feed(h2.frame(h2.PING, 0, 0, b"12345678"))
        assert p.take() == [(h2.PING, h2.FLAG_ACK, 0, b"12345678")]
    run(main())


def test_goaway_finishes_streams_below_last_and_refuses_the_rest():
    async def main():
        p = Peer()
        a, b = p.call(b"a"), p.call(b"b")
        p.take()
        p.feed(h2.frame(h2.GOAWAY, 0, 0, struct.pack(">II", 1, 0) + b"bye"))
        with pytest.raises(NotSent):
            await b.fut
        assert p.gone == [p.conn] and not p.t.closed
        with pytest.raises(NotSent):
            p.call(b"c")
        p.feed(p.respond(1, b"A"))
        assert await a.fut == b"A"
        assert p.t.closed                                  # drained, then closed
    run(main())


def test_rst_stream_refused_is_not_sent_other_codes_are_errors():
    async def main():
        p = Peer()
        a, b = p.call(), p.call()
        p.feed(h2.frame(h2.RST_STREAM, 0, 1, struct.pack(">I", 7)),
               h2.frame(h2.RST_STREAM, 0, 3, struct.pack(">I", 8)))
        with pytest.raises(NotSent):
            await a.fut
        with pytest.raises(CallError) as e:
            await b.fut
        assert e.value.status == 1
    run(main())


def test_connection_lost_sent_is_unavailable_unsent_is_not_sent():
    async def main():
        p = Peer()
        a = p.call()
        p.take()                  # written
        b = p.call()              # not yet flushed
        p.conn.connection_lost(ConnectionResetError("reset"))
        with pytest.raises(CallError) as e:
            await a.fut
        assert e.value.status == 14
        with pytest.raises(NotSent):
            await b.fut
    run(main())


def test_response_larger_than_max_recv_is_reset():
    async def main():
        p = Peer(max_recv=10)
        c = p.call()
        p.take()
        p.feed(p.headers(1, [(":status", "200")]),
               h2.frame(h2.DATA, 0, 1, h2.grpc_message(b"x" * 11)))
        with pytest.raises(CallError) as e:
            await c.fut
        assert e.value.status == 8 and "11 vs. 10" in e.value.message
        assert (h2.RST_STREAM, 0, 1, struct.pack(">I", 8)) in p.take()
    run(main())


def test_response_over_many_frames_and_continuation():
    async def main():
        p = Peer()
        c = p.call()
        msg = h2.grpc_message(b"y" * 50000)
        block = p.enc.encode([(":status", "200"), ("content-type", "application/grpc")])
        p.feed(h2.frame(h2.HEADERS, 0, 1, block[:2]),
               h2.frame(h2.CONTINUATION, h2.FLAG_END_HEADERS, 1, block[2:]),
               *[h2.frame(h2.DATA, 0, 1, msg[i:i + 16384]) for i in range(0, len(msg), 16384)],
               p.headers(1, [("grpc-status", "0")], end=True))
        assert await c.fut == b"y" * 50000
    run(main())


# --- UnaryClient against a scripted server on 127.0.0.1 ------------------------------

class Server(asyncio.Protocol):
    """Answers every request with its own body reversed; remembers header blocks."""
    seen: list = []

    def connection_made(self, t):
        self.t, self.buf, self.enc, self.dec = t, b"", hpack.Encoder(), hpack.Decoder()
        t.write(h2.settings_frame({}))

    def data_received(self, data):
        self.buf += data
        if self.buf.startswith(h2.PREFACE):
            self.buf = self.buf[len(h2.PREFACE):]
        fs = frames(self.buf)
        consumed = sum(9 + len(f[3]) for f in fs)
        self.buf = self.buf[consumed:]
        for t, flags, sid, payload in fs:
            if t == h2.HEADERS:
                Server.seen.append(dict(self.dec.decode(payload)))
            elif t == h2.DATA and flags & h2.FLAG_END_STREAM:
                if payload[5:] == b"slow":
                    continue
                self.t.write(h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, sid, self.enc.encode(
                    [(":status", "200")])) + h2.frame(h2.DATA, 0, sid, h2.grpc_message(
                        payload[5:][::-1])) + h2.frame(h2.HEADERS, 5, sid, self.enc.encode(
                            [("grpc-status", "0")])))


def _free_port():
    from tests.servers import free_port
    return free_port()


def test_client_skips_a_dead_endpoint_sends_metadata_and_timeout():
    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Server, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        Server.seen = []
        c = UnaryClient([("127.0.0.1", _free_port()), ("127.0.0.1", port)], "a:1", 1 << 20,
                        1 << 20)
        try:
            assert await c.call("/x.Y/Z", b"abc", (("token", "t1"),), 5.0) == b"cba"
            assert await c.call("/x.Y/Z", b"de") == b"ed"
            h = Server.seen[0]
            assert (h[":path"], h["token"], h[":authority"]) == ("/x.Y/Z", "t1", "a:1")
            assert h["grpc-timeout"].endswith("m") and 4000 < int(h["grpc-timeout"][:-1]) <= 5000
            assert "grpc-timeout" not in Server.seen[1]
            with pytest.raises(CallError) as e:
                await c.call("/x.Y/Z", b"slow", (), 0.2)
            assert (e.value.status, e.value.message) == (4, "Deadline Exceeded")
            with pytest.raises(CallError) as e:
                await c.call("/x.Y/Z", b"x" * 2_000_000)
            assert e.value.status == 8
        finally:
            c.close()
            srv.close()
    run(main())


def test_client_without_reachable_endpoint_raises_not_sent():
    async def main():
        c = UnaryClient([("127.0.0.1", _free_port())], "a:1", 1 << 20, 1 << 20)
        with pytest.raises(NotSent):
            await c.call("/x.Y/Z", b"abc")
        with pytest.raises(NotSent):                       # without trying again at once
            await c.call("/x.Y/Z", b"abc")
    run(main())


def test_silent_peer_with_calls_waiting_is_pinged_then_dropped(monkeypatch):
    from kvcore.h2client import connection
    monkeypatch.setattr(connection, "KEEPALIVE", 0.05)
    monkeypatch.setattr(connection, "KEEPALIVE_TIMEOUT", 0.05)

    async def main():
        p = Peer()
        p.t.abort = p.t.close
        p.take()
        await asyncio.sleep(0.3)                           # six periods, no call waiting:
        assert not p.t.closed and not p.t.buf              # no ping
        deadline = asyncio.get_running_loop().time() + 5
        p.call()
        while not p.t.closed:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert any(f[0] == h2.PING for f in frames(p.t.buf)) and p.gone == [p.conn]
    run(main())


def test_client_over_tls_checks_the_server_certificate(tmp_path):
    import ssl

    from tests import tlscerts
    pki = tlscerts.make_pki(str(tmp_path))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.set_alpn_protocols(["h2"])

    def client_ctx(ca):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        return ctx

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Server, "127.0.0.1", 0, ssl=server_ctx)
        port = srv.sockets[0].getsockname()[1]
        good = UnaryClient([("127.0.0.1", port)], "a:1", 1 << 20, 1 << 20, client_ctx(pki.ca))
        bad = UnaryClient([("127.0.0.1", port)], "a:1", 1 << 20, 1 << 20,
                          client_ctx(pki.other_ca))
        try:
            assert await good.call("/x.Y/Z", b"tls") == b"slt"
            with pytest.raises(NotSent) as e:
                await bad.call("/x.Y/Z", b"tls")
            assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        finally:
            good.close()
            bad.close()
            srv.close()
    run(main())
