"""``kvcore grpc-proxy start``: serve the cluster's gRPC API through the same engine
a member uses, with every method forwarded upstream as raw bytes (upstream.py),
except what etcd's proxy answers itself (cluster.py). /health and /metrics are
served on the listening port and on --metrics-addr."""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector

from kvcore import logs
from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2
from kvcore.engine.base import CallContext, GrpcError, MethodTable, StatusCode
from kvcore.engine.native import create_engine
from kvcore.loop import run_loop

from . import cluster, kv, lease, watch
from .flags import ProxyArgsError, ProxyConfig, ProxyFlagError, check_args, host_port, parse
from .register import Registration
from .upstream import Upstream

log = logging.getLogger("kvcore.proxy")


def _methods():
    """(path, client_streaming, server_streaming) of every etcd v3 method."""
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for s in mod.DESCRIPTOR.services_by_name.values():
            for m in s.methods:
                yield f"/{s.full_name}/{m.name}", m.client_streaming, m.server_streaming


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("etcd_grpc_proxy_requests", "Requests forwarded upstream.",
                                ["grpc_method"], registry=self.registry)
        self.streams = Gauge("etcd_grpc_proxy_streams", "Open streams through the proxy.",
                             ["grpc_method"], registry=self.registry)
        # etcd's proxy/grpcproxy/metrics.go names.
        self.watchers_coalescing = Gauge(
            "etcd_grpc_proxy_watchers_coalescing_total",
            "Total number of current watchers coalescing", registry=self.registry)
        self.events_coalescing = Counter(
            "etcd_grpc_proxy_events_coalescing",
            "Total number of events coalescing", registry=self.registry)

        self.cache_hits = Counter("etcd_grpc_proxy_cache_hits",
                                  "Total number of cache hits", registry=self.registry)
        self.cache_misses = Counter("etcd_grpc_proxy_cache_misses",
                                    "Total number of cache misses", registry=self.registry)
        self.cache_keys = Gauge("etcd_grpc_proxy_cache_keys_total",
                                "Total number of keys/ranges cached", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def method_table(cfg: ProxyConfig, up: Upstream, metrics: Metrics,
                 registered=None) -> MethodTable:
    table = MethodTable()
    for path, cstream, sstream in _methods():
        name = path.rsplit("/", 1)[1]
        if not (cstream or sstream):
            def unary(p=path):
                async def h(request, ctx):
                    return await up.unary(p, request, ctx)
                return h
            table.unary[path] = unary()
            continue
        fwd = up.bidi if cstream else up.server_stream

        def stream(p=path, n=name, fwd=fwd):
            async def h(requests, send, ctx):
                g = metrics.streams.labels(n)
                g.inc()
                try:
                    await fwd(p, requests, send, ctx)
                finally:
                    g.dec()
            return h
        table.stream[path] = stream()
    table.stream[watch.WATCH] = watch.Coalescer(up, metrics).serve
    table.stream[lease.KEEPALIVE] = lease.KeepAlives(up).serve
    table.unary[cluster.MEMBER_LIST] = cluster.member_list_handler(
        cfg.advertise_client_url, registered, table.unary[cluster.MEMBER_LIST])

    async def not_implemented(request, ctx):     # as etcd's proxy
        raise GrpcError(StatusCode.UNKNOWN, "not implemented")
    table.unary[cluster.MEMBER_PROMOTE] = not_implemented
    kv.install(table, up, metrics)
    for path, h in list(table.unary.items()):
        def counted(h=h, n=path.rsplit("/", 1)[1]):
            child = None                  # the label looked up at the first call only

            async def c(request, ctx):
                nonlocal child
                if child is None:
                    child = metrics.requests.labels(n)
                child.inc()
                return await h(request, ctx)
            return c
        table.unary[path] = counted()
    return table


def http_handler(up: Upstream, metrics: Metrics):
    """etcdhttp.HandleProxyHealth: a Get of "a" through the proxy's client."""
    health_req = rpc_pb2.RangeRequest(key=b"a").SerializeToString()

    async def handle(method, target, headers, body):
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, [("content-type", CONTENT_TYPE_LATEST)], metrics.render()
        if path == "/health":
            ctx = CallContext("/etcdserverpb.KV/Range",
                              deadline=asyncio.get_running_loop().time() + 1.0)
            try:
                await up.unary("/etcdserverpb.KV/Range", health_req, ctx)
                doc, status = {"health": "true", "reason": ""}, 200
            except GrpcError as e:
                doc = {"health": "false", "reason": f"GET ERROR:{e.message}"}
                # http.Error: text/plain and a newline
                return 503, [("content-type", "text/plain; charset=utf-8"),
                             ("x-content-type-options", "nosniff")], json.dumps(
                    doc, separators=(",", ":")).encode() + b"\n"
            return status, [("content-type", "application/json")], json.dumps(
                doc, separators=(",", ":")).encode()
        return 404, [("content-type", "text/plain; charset=utf-8")], b"404 page not found\n"
    return handle


async def serve(cfg: ProxyConfig) -> None:
    up = Upstream(cfg)
    metrics = Metrics()
    http = http_handler(up, metrics)
    ssl_ctx = None
    if cfg.cert_file or cfg.key_file or cfg.auto_tls:
        from kvcore.tls import TLSInfo
        ssl_ctx = TLSInfo(cert_file=cfg.cert_file, key_file=cfg.key_file,
                          trusted_ca_file=cfg.trusted_ca_file,
                          crl_file=cfg.client_crl_file).server_context()
    background = []
    registered = None
    if cfg.resolver_prefix and cfg.advertise_client_url:
        background.append(Registration(up, cfg.resolver_prefix, cfg.advertise_client_url,
                                       cfg.resolver_ttl))
        registered = cluster.Registered(up, cfg.resolver_prefix)
        background.append(registered)
    engine = create_engine(cfg.grpc_engine, method_table(cfg, up, metrics, registered),
                           http=http,
                           max_receive_message_length=4 << 20)
    host, port = host_port(cfg.listen_addr)
    await engine.start(host, port, reuse_port=False, ssl_context=ssl_ctx)
    engines = [engine]
    if cfg.metrics_addr:
        mhost, mport = host_port(cfg.metrics_addr)
        m = create_engine("native", MethodTable(), http=http)
        await m.start(mhost, mport, reuse_port=False)
        engines.append(m)
        log.info("gRPC proxy listening for metrics", extra=logs.fields(address=cfg.metrics_addr))
    log.info("started gRPC proxy", extra=logs.fields(address=cfg.listen_addr))
    for b in background:
        b.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for b in background:
        await b.stop()
    for e in engines:
        await e.stop(1.0)
    await up.close()


def main(argv: list) -> None:
    if not argv or argv[0] != "start":
        print('Error: unknown command for "kvcore grpc-proxy" (use "start")', file=sys.stderr)
        sys.exit(1)
    try:
        cfg = parse(argv[1:])
    except ProxyFlagError as e:
        print(f"Error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        check_args(cfg)
    except ProxyArgsError as e:
        print(e, file=sys.stderr)
        sys.exit(1)
    logs.setup(logger=cfg.logger, level="debug" if cfg.debug else cfg.log_level)
    run_loop(serve(cfg))
