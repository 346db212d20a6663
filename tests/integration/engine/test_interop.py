"""Conformance of both gRPC engines to grpcio's (C-core) client: one mixin, run once
per engine (uvloop's test_tcp.py style). Engine-specific tests live in the
subclasses."""
from __future__ import annotations

import socket
import subprocess
import threading
import unittest

import grpc
import pytest

from kvcore.engine.grpcio_engine import GrpcioEngine
from kvcore.engine.native import NativeEngine

from .support import HOST, Probe, ServerThread, http_handler, make_methods, wait_for

ident = (lambda x: x)
MAX_RECV = 2 * 1024 * 1024 + 512 * 1024


class _InteropTests:
    """Runs against whatever engine ``make_engine`` builds."""

    engine_cls = None

    @classmethod
    def make_engine(cls, methods):
        return cls.engine_cls(methods, max_receive_message_length=MAX_RECV)

    @classmethod
    def setUpClass(cls):
        cls.probe = Probe()
        methods = make_methods(cls.probe)
        cls.server = ServerThread(lambda: cls.make_engine(methods)).start()
        cls.channel = grpc.insecure_channel(
            f"{HOST}:{cls.server.port}",
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                     ("grpc.max_send_message_length", 64 * 1024 * 1024)])

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop()

    def setUp(self):
        self.probe.cancelled.clear()

    def unary(self, name):
        return self.channel.unary_unary(f"/test.T/{name}", request_serializer=ident,
                                        response_deserializer=ident)

    def stream(self, name):
        return self.channel.stream_stream(f"/test.T/{name}", request_serializer=ident,
                                          response_deserializer=ident)

    # -- unary ---------------------------------------------------------------

    def test_unary_echo(self):
        self.assertEqual(self.unary("Echo")(b"hello", timeout=10), b"hello")

    def test_unary_empty_message(self):
        self.assertEqual(self.unary("Echo")(b"", timeout=10), b"")

    def test_unary_many_sequential_and_concurrent(self):
        futs = [self.unary("Echo").future(b"m%d" % i, timeout=20) for i in range(200)]
        self.assertEqual([f.result() for f in futs], [b"m%d" % i for i in range(200)])

    def test_large_request_and_response_1_5_mib(self):
        big = bytes(range(256)) * (1536 * 4)   # 1.5 MiB
        self.assertEqual(self.unary("Echo")(big, timeout=30), big)
        self.assertEqual(len(self.unary("Big")(b"%d" % len(big), timeout=30)), len(big))

    def test_request_larger_than_max_is_resource_exhausted(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Echo")(b"x" * (MAX_RECV + 1), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # The connection stays usable.
        self.assertEqual(self.unary("Echo")(b"after", timeout=10), b"after")

    def test_metadata_reaches_handler(self):
        md = (("token", "abc.def"), ("x-custom", "v1 with spaces"))
        self.assertEqual(self.unary("Meta")(b"token", metadata=md, timeout=10), b"abc.def")
        self.assertEqual(self.unary("Meta")(b"x-custom", metadata=md, timeout=10),
                         b"v1 with spaces")

    def test_error_status_and_message(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Fail")(b"5:etcdserver: key not found", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(cm.exception.details(), "etcdserver: key not found")

    def test_error_message_percent_encoding_round_trip(self):
        msg = "100% wrong: ünïcode\nnewline"
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Fail")(f"9:{msg}".encode(), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(cm.exception.details(), msg)

    def test_other_exception_is_unknown(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Boom")(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)

    def test_unknown_method_is_unimplemented(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Nope")(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_deadline_reaches_handler(self):
        remaining = float(self.unary("Deadline")(b"", timeout=5))
        self.assertTrue(0 < remaining <= 5.5, remaining)
        self.assertEqual(self.unary("Deadline")(b""), b"none")

    def test_deadline_exceeded_cancels_handler(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Sleep")(b"30", timeout=0.3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertTrue(self.probe.cancelled.wait(10))

    def test_client_cancellation_cancels_handler(self):
        fut = self.unary("Sleep").future(b"30", timeout=60)
        self.assertTrue(wait_for(lambda: self.probe.last_ctx is not None and
                                 self.probe.last_ctx.method == "/test.T/Sleep"))
        fut.cancel()
        self.assertTrue(self.probe.cancelled.wait(10))

    # -- streaming -----------------------------------------------------------

    def test_server_stream(self):
        out = list(self.stream("ServerStream")(iter([b"50"]), timeout=10))
        self.assertEqual(out, [b"%d" % i for i in range(50)])

    def test_client_stream(self):
        out = list(self.stream("ClientStream")(iter([b"a" * 10] * 100), timeout=10))
        self.assertEqual(out, [b"1000"])

    def test_bidi_interleaved(self):
        requests = []
        cond = threading.Condition()

        def gen():
            for i in range(20):
                with cond:
                    requests.append(i)
                yield b"q%d" % i

        got = list(self.stream("Bidi")(gen(), timeout=10))
        self.assertEqual(got, [b"q%d!" % i for i in range(20)])

    def test_bidi_large_messages(self):
        big = b"z" * (1536 * 1024)
        got = list(self.stream("Bidi")(iter([big, big]), timeout=30))
        self.assertEqual(got, [big + b"!", big + b"!"])

    def test_stream_error_after_messages(self):
        call = self.stream("StreamFail")(iter([]), timeout=10)
        self.assertEqual(next(call), b"one")
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(cm.exception.details(), "after one")

    def test_stream_cancellation_cancels_handler(self):
        call = self.stream("Forever")(iter([b"100"]), timeout=60)
        for _ in range(10):
            next(call)
        call.cancel()
        self.assertTrue(self.probe.cancelled.wait(10))

    def test_stream_deadline(self):
        call = self.stream("Forever")(iter([b"100"]), timeout=0.5)
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in call:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertTrue(self.probe.cancelled.wait(10))

    def test_slow_reader_slows_only_its_stream(self):
        slow = self.stream("Forever")(iter([b"65536"]), timeout=60)
        next(slow)    # the handler now blocks on flow control: nobody reads
        for i in range(20):
            self.assertEqual(self.unary("Echo")(b"%d" % i, timeout=10), b"%d" % i)
        self.assertEqual(list(self.stream("ServerStream")(iter([b"5"]), timeout=10)),
                         [b"0", b"1", b"2", b"3", b"4"])
        slow.cancel()
        self.assertTrue(self.probe.cancelled.wait(10))

    # -- the Go client ---------------------------------------------------------

    def test_etcdctl_get_through_engine(self):
        """etcdctl (grpc-go) against a stub KV.Range served by the engine."""
        out = subprocess.run(
            ["etcdctl", f"--endpoints={HOST}:{self.etcd_server.port}",
             "--dial-timeout=5s", "--command-timeout=5s", "get", "foo"],
            capture_output=True, text=True, timeout=30,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["foo", "bar"])
        out = subprocess.run(
            ["etcdctl", f"--endpoints={HOST}:{self.etcd_server.port}",
             "--dial-timeout=5s", "--command-timeout=5s", "put", "foo", "baz"],
            capture_output=True, text=True, timeout=30,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("etcdserver: stub is read-only", out.stderr)

    @classmethod
    def _etcd_methods(cls):
        from kvcore.api import kv_pb2, rpc_pb2
        from kvcore.engine.base import GrpcError, MethodTable, StatusCode

        async def rng(req, ctx):
            r = rpc_pb2.RangeRequest.FromString(req)
            resp = rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=7))
            if r.key == b"foo":
                resp.kvs.append(kv_pb2.KeyValue(key=b"foo", value=b"bar", create_revision=2,
                                                mod_revision=7, version=3))
                resp.count = 1
            return resp.SerializeToString()

        async def put(req, ctx):
            raise GrpcError(StatusCode.FAILED_PRECONDITION, "etcdserver: stub is read-only")

        return MethodTable(unary={"/etcdserverpb.KV/Range": rng,
                                  "/etcdserverpb.KV/Put": put})

    @classmethod
    def _start_etcd_stub(cls):
        methods = cls._etcd_methods()
        return ServerThread(lambda: cls.make_engine(methods)).start()


class _EtcdStub:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.etcd_server = cls._start_etcd_stub()

    @classmethod
    def tearDownClass(cls):
        cls.etcd_server.stop()
        super().tearDownClass()


class TestGrpcioEngine(_EtcdStub, _InteropTests, unittest.TestCase):
    engine_cls = GrpcioEngine


@pytest.mark.native_engine
class TestNativeEngine(_EtcdStub, _InteropTests, unittest.TestCase):
    engine_cls = NativeEngine

    @classmethod
    def make_engine(cls, methods):
        return NativeEngine(methods, http=http_handler, max_receive_message_length=MAX_RECV)

    # HTTP on the same port (the grpcio engine cannot share its port).

    def _http1(self, raw: bytes) -> bytes:
        with socket.create_connection((HOST, self.server.port), 5) as s:
            s.sendall(raw)
            s.settimeout(5)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk

    def test_http1_health_on_grpc_port(self):
        resp = self._http1(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(resp.startswith(b"HTTP/1.1 200 OK\r\n"), resp)
        self.assertTrue(resp.endswith(b'{"health":"true"}'))

    def test_http1_post_body_and_keepalive_pipelining(self):
        req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        last = b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        resp = self._http1(req + req + last)
        self.assertEqual(resp.count(b"HTTP/1.1 200 OK"), 2, resp)
        self.assertEqual(resp.count(b"hello"), 2)
        self.assertIn(b"x-method: POST", resp)
        self.assertIn(b"HTTP/1.1 404 Not Found", resp)

    def test_http1_without_handler_is_404(self):
        server = ServerThread(lambda: NativeEngine(make_methods(Probe()))).start()
        try:
            with socket.create_connection((HOST, server.port), 5) as s:
                s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                s.settimeout(5)
                self.assertTrue(s.recv(65536).startswith(b"HTTP/1.1 404"))
        finally:
            server.stop()

    def test_h2load_unary_and_h2_http(self):
        import tempfile
        with tempfile.NamedTemporaryFile() as f:
            f.write(b"\x00\x00\x00\x00\x03abc")
            f.flush()
            out = subprocess.run(
                ["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", f.name,
                 "-H", "content-type: application/grpc", "-H", "te: trailers",
                 f"http://{HOST}:{self.server.port}/test.T/Echo"],
                capture_output=True, text=True, timeout=120)
        self.assertIn("2000 succeeded, 0 failed", out.stdout, out.stdout)
        out = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "5",
                              f"http://{HOST}:{self.server.port}/health"],
                             capture_output=True, text=True, timeout=120)
        self.assertIn("200 succeeded, 0 failed", out.stdout, out.stdout)
        self.assertIn("200 2xx", out.stdout)

    def test_no_streams_left_after_calls(self):
        for i in range(20):
            self.unary("Echo")(b"x", timeout=10)
        self.assertTrue(wait_for(lambda: self.server.call(
            lambda: self.server.engine.stats()["streams"]) == 0))


@pytest.mark.native_engine
class TestNativeEngineTaskPerCall(_EtcdStub, _InteropTests, unittest.TestCase):
    """The native engine with eager=False: every handler starts in its own Task."""

    @classmethod
    def make_engine(cls, methods):
        return NativeEngine(methods, max_receive_message_length=MAX_RECV, eager=False)
