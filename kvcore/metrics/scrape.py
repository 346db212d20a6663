"""One scrape of a member, run in the core: gather the workers' gRPC counters over
the IPC, then render the core's registry (text format 0.0.4, as promhttp)."""
from __future__ import annotations

import asyncio
import os

from prometheus_client import CollectorRegistry, generate_latest

from kvcore.metrics import grpc_stats, process

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WORKER_TIMEOUT = 2.0
# etcd counters named without the "_total" suffix prometheus_client adds to samples.
_NO_TOTAL = [n.encode() for n in ("etcd_server_health_failures", "etcd_server_health_success",
                                  "etcd_server_learner_promote_successes")]


class _Once:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


async def scrape(core, extensive: bool) -> bytes:
    m = core.metrics
    m.scrapes_in_flight += 1
    try:
        conns = [c for c in list(core.connections) if c.worker_pid]
        asks = [c.request_stats() for c in conns]
        snaps = []
        if asks:
            done, pending = await asyncio.wait(asks, timeout=WORKER_TIMEOUT)
            for f in pending:
                f.cancel()
            snaps = [f.result() for f in done
                     if not f.cancelled() and f.exception() is None and f.result()]
        merged = grpc_stats.Merged(snaps)
        fams = list(m.collect(merged.local_ranges))
        fams += grpc_stats.families(merged, extensive, with_counters=False)
        fams += process.families([os.getpid()] + [c.worker_pid for c in conns])
        fams += list(m.promhttp())
        reg = CollectorRegistry(auto_describe=False)
        # As Go's client: a labelled family without any series is not shown.
        reg.register(_Once(sorted((f for f in fams if f.samples), key=lambda f: f.name)))
        body = generate_latest(reg) + grpc_stats.render_counters(merged).encode()
        for name in _NO_TOTAL:
            body = body.replace(name + b"_total", name)
        m.scrapes["200"] += 1
        return body
    finally:
        m.scrapes_in_flight -= 1
