"""Upstream.unary over kvcore.h2client against a scripted server: gRPC statuses reach
the client as the grpc.aio path gives them, and a deadline passing in the proxy is
Unknown "context deadline exceeded" (what etcd's proxy answers)."""
import asyncio

import pytest

from kvcore.engine.base import CallContext, GrpcError, StatusCode
from kvcore.h2client import framing as h2
from kvcore.proxy.flags import parse
from kvcore.proxy.upstream import Upstream
from tests.unit.h2client.test_connection import Server, frames


class Failing(Server):
    """Answers every request with trailers-only FailedPrecondition, message encoded."""

    def data_received(self, data):
        self.buf += data
        if self.buf.startswith(h2.PREFACE):
            self.buf = self.buf[len(h2.PREFACE):]
        fs = frames(self.buf)
        self.buf = self.buf[sum(9 + len(f[3]) for f in fs):]
        for t, flags, sid, payload in fs:
            if t == h2.DATA and flags & h2.FLAG_END_STREAM:
                self.t.write(h2.frame(h2.HEADERS, 5, sid, self.enc.encode(
                    [(":status", "200"), ("grpc-status", "9"),
                     ("grpc-message", "etcdserver: 50%25 gone")])))


async def _unary(server_cls, body: bytes, deadline_in=None):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(server_cls, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    up = Upstream(parse([f"--endpoints=127.0.0.1:{port}"]))
    ctx = CallContext(method="/p", metadata={"token": "t"},
                      deadline=None if deadline_in is None else loop.time() + deadline_in)
    try:
        return await up.unary("/etcdserverpb.KV/Put", body, ctx)
    finally:
        await up.close()
        srv.close()


def test_answer_and_status_mapping():
    assert asyncio.run(_unary(Server, b"abc")) == b"cba"
    with pytest.raises(GrpcError) as e:
        asyncio.run(_unary(Failing, b"abc"))
    assert (e.value.code, e.value.message) == (StatusCode.FAILED_PRECONDITION,
                                               "etcdserver: 50% gone")


def test_deadline_passing_in_the_proxy_is_unknown_context_deadline_exceeded():
    with pytest.raises(GrpcError) as e:
        asyncio.run(_unary(Server, b"slow", deadline_in=0.5))
    assert (e.value.code, e.value.message) == (StatusCode.UNKNOWN,
                                               "context deadline exceeded")
