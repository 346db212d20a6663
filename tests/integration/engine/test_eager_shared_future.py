"""A future awaited by several handlers' eager first steps (one read-index request
serving many reads) must not break asyncio's blocking-flag protocol."""
import asyncio
import collections

import grpc
import pytest

from kvcore.engine.base import MethodTable
from kvcore.engine.native import NativeEngine

pytestmark = pytest.mark.native_engine


def test_handlers_sharing_one_future_all_complete():
    async def main():
        loop = asyncio.get_running_loop()
        shared = {"fut": None}

        def current():
            f = shared["fut"]
            if f is None or f.done():
                f = shared["fut"] = loop.create_future()
                loop.call_later(0.002, f.set_result, b"x")
            return f

        async def handler(req, ctx):
            return await current()

        eng = NativeEngine(MethodTable(unary={"/t.T/M": handler}))
        port = await eng.start("127.0.0.1", 0)

        def client():
            out = collections.Counter()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                m = ch.unary_unary("/t.T/M")
                for f in [m.future(b"", timeout=10) for _ in range(300)]:
                    try:
                        out[f.result()] += 1
                    except grpc.RpcError as e:
                        out[e.details()] += 1
            return out

        try:
            return await loop.run_in_executor(None, client)
        finally:
            await eng.stop(0.1)

    import uvloop
    assert uvloop.run(main()) == {b"x": 300}
