"""Watch coalescing and fan-out through a gRPC proxy: kvcore's and etcd 3.5.1's side
by side (issue 21, acceptance 3).

For each: a one-member cluster of its own kind and its proxy; W watchers of one key
(streams of 100), the watches the member holds before and after (its /metrics:
etcd_debugging_mvcc_watcher_total and grpc_server_started_total of Watch streams, i.e.
what the proxy costs upstream), the proxy's RSS before and after (memory per
watcher), then P puts and the time until every watcher has every event (events
delivered per second). Rounds alternate kvcore and etcd. Bounded: W <= 2000,
P <= 200, rounds <= 9, every wait 60 s.

    python -m bench.probes.proxy_watch [--watchers 1000] [--puts 50] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import urllib.request

import grpc

from kvcore.api import rpc_pb2
from tests import etcd351, servers
from tests.proxy.proxyctl import start_proxy


async def held_open(requests):
    """The requests, then no half-close (etcd's proxy ends a half-closed Watch)."""
    for r in requests:
        yield r
    await asyncio.Event().wait()


def upstream_watches(port: int) -> tuple:
    """(watchers, Watch streams started) on the member's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    watchers = streams = 0
    for line in text.splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            watchers = int(float(line.split()[1]))
        elif line.startswith("grpc_server_started_total{") and 'grpc_method="Watch"' in line:
            streams += int(float(line.split()[-1]))
    return watchers, streams


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def fanout(addr: str, pid: int, member_port: int, watchers: int, puts: int,
                 per_stream: int = 100):
    async with grpc.aio.insecure_channel(addr) as ch:
        watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                                 request_serializer=rpc_pb2.WatchRequest.SerializeToString,
                                 response_deserializer=rpc_pb2.WatchResponse.FromString)
        put = ch.unary_unary("/etcdserverpb.KV/Put",
                             request_serializer=rpc_pb2.PutRequest.SerializeToString,
                             response_deserializer=rpc_pb2.PutResponse.FromString)
        await put(rpc_pb2.PutRequest(key=b"warm", value=b"x"), timeout=60)
        before = rss_kib(pid)
        up_before = upstream_watches(member_port)
        req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"fan"))
        calls = [watch(held_open([req] * per_stream)) for _ in range(watchers // per_stream)]
        for c in calls:
            n = 0
            while n < per_stream:
                n += (await asyncio.wait_for(c.read(), 60)).created
        after = rss_kib(pid)
        up_after = upstream_watches(member_port)
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
        return ((after - before) / watchers, watchers * puts / dt,
                up_after[0] - up_before[0], up_after[1] - up_before[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--puts", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    a.watchers, a.puts, a.rounds = min(a.watchers, 2000), min(a.puts, 200), min(a.rounds, 9)
    base = tempfile.mkdtemp()
    results: dict = {"kvcore": [], "etcd": []}
    for rnd in range(a.rounds):
        for kind in ("kvcore", "etcd"):
            d = os.path.join(base, f"{kind}{rnd}")
            m = (servers.start_kvcore(d) if kind == "kvcore"
                 else servers.start_etcd(d, binary=etcd351.ETCD))
            proxy, addr = start_proxy(kind, base, [m])
            try:
                r = asyncio.run(fanout(addr, proxy.pid, m.port, a.watchers, a.puts))
            finally:
                proxy.terminate()
                proxy.wait(10)
                m.stop()
            results[kind].append(r)
            print(f"round {rnd + 1} {kind:6s} grpc-proxy: {a.watchers} watchers -> "
                  f"{r[2]} upstream watcher(s) on {r[3]} upstream Watch stream(s); "
                  f"{r[0]:.2f} KiB RSS per watcher; {r[1]:,.0f} events/s delivered "
                  f"({a.puts} puts)", flush=True)
    for kind, rs in results.items():
        print(f"{kind:6s} median of {len(rs)}: "
              f"{statistics.median(r[0] for r in rs):.2f} KiB/watcher, "
              f"{statistics.median(r[1] for r in rs):,.0f} events/s; upstream watchers "
              f"{sorted(set(r[2] for r in rs))}, streams {sorted(set(r[3] for r in rs))}")


if __name__ == "__main__":
    main()
