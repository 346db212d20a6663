"""The workers' gRPC counters: each call counted once by method and code, stream
messages both ways, and the handling-time histogram only with --metrics extensive."""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kvcore.api.methods import METHOD_ID
from kvcore.engine.base import CallContext, GrpcError, MethodTable, StatusCode
from kvcore.metrics import grpc_stats

PUT, WATCH = "/etcdserverpb.KV/Put", "/etcdserverpb.Watch/Watch"


async def _ok(req, ctx):
    return b"resp"


async def _refuse(req, ctx):
    raise GrpcError(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")


async def _echo(requests, send, ctx):
    async for msg in requests:
        await send(msg + b"!")


def _render(snapshots, extensive):
    """As a scrape renders them (kvcore/metrics/scrape.py)."""
    merged = grpc_stats.Merged(snapshots)

    class C:
        def collect(self):
            return grpc_stats.families(merged, extensive, with_counters=False)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())
    return generate_latest(reg).decode() + grpc_stats.render_counters(merged)


@pytest.mark.parametrize("extensive", [False, True])
def test_calls_are_counted_by_method_and_code(extensive):
    async def run(handler_put):
        st = grpc_stats.GrpcStats(extensive)
        t = st.instrument(MethodTable(unary={PUT: handler_put}, stream={WATCH: _echo}), METHOD_ID)
        ctx = CallContext(PUT, {"client-api-version": "3.5"})
        try:
            await t.unary[PUT](b"12345", ctx)
        except GrpcError:
            pass

        async def reqs():
            for m in (b"a", b"b", b"c"):
                yield m
        sent = []

        async def send(m):
            sent.append(m)
        await t.stream[WATCH](reqs(), send, CallContext(WATCH))
        assert sent == [b"a!", b"b!", b"c!"]
        return st.snapshot()

    ok = asyncio.run(run(_ok))
    bad = asyncio.run(run(_refuse))
    text = _render([ok, bad, bad], extensive)   # three workers
    lab = 'grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"'
    assert f'grpc_server_started_total{{{lab}}} 3\n' in text
    assert f'grpc_server_handled_total{{grpc_code="OK",{lab}}} 1\n' in text
    assert f'grpc_server_handled_total{{grpc_code="OutOfRange",{lab}}} 2\n' in text
    assert f'grpc_server_handled_total{{grpc_code="Unavailable",{lab}}} 0\n' in text
    assert f'grpc_server_msg_sent_total{{{lab}}} 1\n' in text
    wl = 'grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"'
    assert f'grpc_server_msg_received_total{{{wl}}} 9\n' in text
    assert f'grpc_server_msg_sent_total{{{wl}}} 9\n' in text
    assert f'grpc_server_handled_total{{grpc_code="OK",{wl}}} 3\n' in text
    assert "etcd_network_client_grpc_received_bytes_total 24.0" in text   # 3 x (5 + 1+1+1)
    assert "etcd_network_client_grpc_sent_bytes_total 22.0" in text   # 4 + 3 x 6 (no reply to a refusal)
    assert 'etcd_server_client_requests_total{client_api_version="3.5",type="unary"} 3.0' in text
    # Lock and Election are not pre-set (etcd registers them after grpc_prometheus).
    assert "v3lockpb" not in text
    assert ("grpc_server_handling_seconds_count{" + lab + "} 3.0" in text) == extensive


def test_stream_messages_taken_by_callback_and_sent_without_waiting_are_counted():
    """The native engine's fast paths (listen, send_nowait, a Framed batch) count
    as the awaited ones do: one per message, message bytes without prefixes."""
    from kvcore.engine.base import Framed

    class Requests:     # an engine's request stream that also offers listen()
        def __init__(self):
            self.cb = None

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise StopAsyncIteration

        def listen(self, on_message, on_end):
            self.cb = (on_message, on_end)

    queued = []

    async def handler(requests, send, ctx):
        got = []
        requests.listen(got.append, lambda: got.append(None))
        engine_requests.cb[0](b"ab")
        engine_requests.cb[0](b"c")
        engine_requests.cb[1]()
        assert got == [b"ab", b"c", None]
        assert ctx.send_nowait(b"xyz")
        assert ctx.send_nowait(Framed(b"\x00\x00\x00\x00\x01a\x00\x00\x00\x00\x02bc", 2))
        await send(Framed(b"\x00\x00\x00\x00\x01d", 1))

    async def run():
        st = grpc_stats.GrpcStats(False)
        t = st.instrument(MethodTable(stream={WATCH: handler}), METHOD_ID)

        async def send(m):
            queued.append(m)
        ctx = CallContext(WATCH, send_nowait=lambda m: queued.append(m) or True)
        await t.stream[WATCH](engine_requests, send, ctx)
        return st.snapshot()

    engine_requests = Requests()
    text = _render([asyncio.run(run())], False)
    wl = 'grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"'
    assert f'grpc_server_msg_received_total{{{wl}}} 2\n' in text
    assert f'grpc_server_msg_sent_total{{{wl}}} 4\n' in text
    assert "etcd_network_client_grpc_received_bytes_total 3.0" in text
    assert "etcd_network_client_grpc_sent_bytes_total 7.0" in text   # xyz + a + bc + d
    assert len(queued) == 3
