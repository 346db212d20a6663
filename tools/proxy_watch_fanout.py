"""Watch fan-out through a gRPC proxy: kvcore's and etcd 3.5.1's side by side.

For each: a one-member cluster of its own kind and its proxy; W watchers of one key
(S client streams), the proxy's RSS before and after (memory per watcher), then P puts
and the time until every watcher has every event (events delivered per second).
Bounded: W <= 2000, P <= 200, every wait 60 s.

    PYTHONPATH=. python3 tools/proxy_watch_fanout.py [--watchers 1000] [--puts 50]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kvcore.api import rpc_pb2  # noqa: E402
from tests import etcd351, servers  # noqa: E402
from tests.proxy.test_grpc_proxy import held_open, start_proxy  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def fanout(addr: str, pid: int, watchers: int, puts: int, per_stream: int = 100):
    async with grpc.aio.insecure_channel(addr) as ch:
        watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                                 request_serializer=rpc_pb2.WatchRequest.SerializeToString,
                                 response_deserializer=rpc_pb2.WatchResponse.FromString)
        put = ch.unary_unary("/etcdserverpb.KV/Put",
                             request_serializer=rpc_pb2.PutRequest.SerializeToString,
                             response_deserializer=rpc_pb2.PutResponse.FromString)
        await put(rpc_pb2.PutRequest(key=b"warm", value=b"x"), timeout=60)
        before = rss_kib(pid)
        req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fan"))
        calls = [watch(held_open([req] * per_stream)) for _ in range(watchers // per_stream)]
        for c in calls:
            n = 0
            while n < per_stream:
                n += (await asyncio.wait_for(c.read(), 60)).created
        after = rss_kib(pid)
        want = per_stream * puts

        async def drain(c):
            got = 0
            while got < want:
                r = await asyncio.wait_for(c.read(), 60)
                got += len(r.events)
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(drain(c)) for c in calls]
        for i in range(puts):
            await put(rpc_pb2.PutRequest(key=b"fan", value=str(i).encode()), timeout=60)
        await asyncio.gather(*tasks)
        dt = time.monotonic() - t0
        for c in calls:
            c.cancel()
        return (after - before) / watchers, watchers * puts / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--puts", type=int, default=50)
    a = ap.parse_args()
    a.watchers, a.puts = min(a.watchers, 2000), min(a.puts, 200)
    base = tempfile.mkdtemp()
    for kind in ("kvcore", "etcd"):
        m = (servers.start_kvcore(os.path.join(base, "kv.etcd")) if kind == "kvcore"
             else servers.start_etcd(os.path.join(base, "etcd.etcd"), binary=etcd351.ETCD))
        proxy, addr = start_proxy(kind, base, [m])
        try:
            kib, rate = asyncio.run(fanout(addr, proxy.pid, a.watchers, a.puts))
            print(f"{kind:7s} grpc-proxy: {a.watchers} watchers, {a.puts} puts: "
                  f"{kib:.1f} KiB RSS per watcher, {rate:,.0f} events/s delivered")
        finally:
            proxy.terminate()
            proxy.wait(10)
            m.stop()


if __name__ == "__main__":
    main()
