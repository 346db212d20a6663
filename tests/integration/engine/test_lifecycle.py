"""Native engine: graceful shutdown (GOAWAY, in-flight calls finish), TLS with
ALPN h2 (gRPC) and HTTP/1.1 over TLS on the same port, and the engine switch."""
from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import unittest

import grpc
import pytest

from kvcore.engine.base import MethodTable
from kvcore.engine.grpcio_engine import GrpcioEngine
from kvcore.engine.native import NativeEngine, available, create_engine

from .support import (ACK, GOAWAY, HOST, PING, Probe, ServerThread, frame, h2_connect,
                      http_handler, make_methods, read_frames, wait_for)

ident = (lambda x: x)


@pytest.mark.native_engine
class TestGracefulStop(unittest.TestCase):

    def test_stop_sends_goaway_and_lets_running_calls_finish(self):
        probe = Probe()
        server = ServerThread(lambda: NativeEngine(make_methods(probe))).start()
        raw = h2_connect(server.port)
        channel = grpc.insecure_channel(f"{HOST}:{server.port}")
        try:
            fut = channel.unary_unary("/test.T/Sleep", request_serializer=ident,
                                      response_deserializer=ident).future(b"0.5", timeout=20)
            self.assertTrue(wait_for(lambda: probe.last_ctx is not None))
            stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
            stopper.start()
            frames, _ = read_frames(raw, until=lambda f: f[0] == GOAWAY, timeout=10)
            goaways = [f for f in frames if f[0] == GOAWAY]
            self.assertTrue(goaways)
            self.assertEqual(struct.unpack(">I", goaways[0][3][4:8])[0], 0)   # NO_ERROR
            self.assertEqual(fut.result(), b"slept")
            stopper.join(30)
            self.assertFalse(stopper.is_alive())
            self.assertFalse(probe.cancelled.is_set())
        finally:
            raw.close()
            channel.close()

    def test_stop_cancels_calls_after_grace(self):
        probe = Probe()
        server = ServerThread(lambda: NativeEngine(make_methods(probe))).start()
        channel = grpc.insecure_channel(f"{HOST}:{server.port}")
        try:
            fut = channel.unary_unary("/test.T/Sleep", request_serializer=ident,
                                      response_deserializer=ident).future(b"60", timeout=60)
            self.assertTrue(wait_for(lambda: probe.last_ctx is not None))
            server.stop(grace=0.2)
            self.assertTrue(probe.cancelled.wait(10))
            with self.assertRaises(grpc.RpcError):
                fut.result()
        finally:
            channel.close()


@pytest.mark.native_engine
class TestServerKeepalive(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = ServerThread(lambda: NativeEngine(
            make_methods(Probe()), keepalive_time=0.2, keepalive_timeout=0.4)).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_silent_client_is_pinged_then_closed(self):
        with h2_connect(self.server.port) as s:
            frames, _ = read_frames(s, until=lambda f: f[0] == PING and not f[1] & ACK,
                                    timeout=10)
            self.assertTrue(any(f[0] == PING and not f[1] & ACK for f in frames))
            _, eof = read_frames(s, timeout=10)      # no answer: the server hangs up
            self.assertTrue(eof)

    def test_client_answering_pings_stays(self):
        with h2_connect(self.server.port) as s:
            for _ in range(3):
                frames, eof = read_frames(
                    s, until=lambda f: f[0] == PING and not f[1] & ACK, timeout=10)
                self.assertFalse(eof)
                ping = [f for f in frames if f[0] == PING and not f[1] & ACK][-1]
                s.sendall(frame(PING, ACK, 0, ping[3]))
            self.assertTrue(wait_for(lambda: self.server.call(
                lambda: self.server.engine.stats()["connections"]) >= 1))


def _make_cert(tmp: str):
    key, crt = f"{tmp}/key.pem", f"{tmp}/crt.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", crt, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return key, crt


@pytest.mark.native_engine
class TestTLS(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.key, cls.crt = _make_cert(cls.tmp.name)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cls.crt, cls.key)
        cls.server = ServerThread(lambda: NativeEngine(make_methods(Probe()), http=http_handler),
                                  ssl_context=ctx).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tmp.cleanup()

    def test_grpc_over_tls_alpn_h2(self):
        with open(self.crt, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel(f"localhost:{self.server.port}", creds) as ch:
            echo = ch.unary_unary("/test.T/Echo", request_serializer=ident,
                                  response_deserializer=ident)
            self.assertEqual(echo(b"secret", timeout=10), b"secret")
            big = b"s" * (1536 * 1024)
            self.assertEqual(echo(big, timeout=30), big)

    def test_alpn_selects_h2_and_http1_works_over_tls(self):
        cctx = ssl.create_default_context(cafile=self.crt)
        cctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((HOST, self.server.port), 5) as raw:
            with cctx.wrap_socket(raw, server_hostname="localhost") as s:
                self.assertEqual(s.selected_alpn_protocol(), "h2")
        cctx = ssl.create_default_context(cafile=self.crt)
        cctx.set_alpn_protocols(["http/1.1"])
        with socket.create_connection((HOST, self.server.port), 5) as raw:
            with cctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data)


class TestEngineSwitch(unittest.TestCase):

    def test_create_engine(self):
        m = MethodTable()
        if available():
            self.assertIsInstance(create_engine("native", m), NativeEngine)
        self.assertIsInstance(create_engine("grpcio", m, http=None), GrpcioEngine)
        with self.assertRaises(ValueError):
            create_engine("nope", m)

    def test_fallback_to_grpcio_when_native_cannot_load(self):
        from kvcore.engine import native
        saved = native._core, native.IMPORT_ERROR
        native._core, native.IMPORT_ERROR = None, ImportError("libnghttp2.so.14: missing")
        try:
            with self.assertLogs("kvcore.engine.native", "WARNING") as logs:
                eng = create_engine("native", MethodTable(), max_concurrent_streams=10)
            self.assertIsInstance(eng, GrpcioEngine)
            self.assertIn("falling back to grpcio", logs.output[0])
        finally:
            native._core, native.IMPORT_ERROR = saved

    def test_unavailable_native_engine_raises_import_error(self):
        from kvcore.engine import native
        saved = native._core, native.IMPORT_ERROR
        native._core, native.IMPORT_ERROR = None, ImportError("missing")
        try:
            with self.assertRaises(ImportError):
                NativeEngine(MethodTable())
        finally:
            native._core, native.IMPORT_ERROR = saved
