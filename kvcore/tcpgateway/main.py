"""``kvcore gateway start``: flags, endpoints (given, or from DNS SRV records as etcd's
discoverEndpoints finds them), etcd's start-up checks and messages, then the proxy."""
from __future__ import annotations

import asyncio
import socket
import sys

from kvcore import logs
from kvcore.discovery import srv
from kvcore.loop import run_loop
from kvcore.server import sdnotify
from kvcore.tcpgateway.flags import GatewayFlagError, parse, split_host_port, strip_scheme
from kvcore.tcpgateway.proxy import Remote, TCPProxy, log


def _fail(msg: str, stream=sys.stdout) -> None:
    print(msg, file=stream)
    sys.exit(1)


def _discover(cfg) -> tuple[list, list]:
    """-> (endpoint URLs, SRV records as Remotes): etcd's srv.GetClient for
    _etcd-client-ssl and _etcd-client (with -<name>), then, unless
    --insecure-discovery, the https ones that take a TCP dial."""
    suffix = f"-{cfg.discovery_srv_name}" if cfg.discovery_srv_name else ""
    urls, remotes, errs = [], [], []
    for service, scheme in (("etcd-client-ssl", "https"), ("etcd-client", "http")):
        try:
            records = srv._lookup_srv(service + suffix, cfg.discovery_srv)
        except srv.SrvError as e:
            errs.append(str(e))
            continue
        for rr in records:
            host = str(rr.target).rstrip(".")
            urls.append(f"{scheme}://{host}:{rr.port}")
            remotes.append(Remote(host, rr.port, rr.priority, rr.weight))
    if len(errs) == 2:
        _fail(f"dns lookup errors: {errs[0]} and {errs[1]}", sys.stderr)
    log.info("discovered cluster from SRV", extra=logs.fields(
        srv_server=cfg.discovery_srv, endpoints=urls))
    if cfg.insecure_discovery:
        return urls, remotes
    good = []
    for u in urls:
        if u.startswith("https://"):
            host, port = split_host_port(u[len("https://"):])
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
                good.append(u)
            except OSError:
                pass
    log.info("using validated discovered SRV endpoints", extra=logs.fields(
        srv_server=cfg.discovery_srv, endpoints=good))
    return good, remotes   # as etcd: the proxy still takes every SRV record


def main(argv: list) -> None:
    try:
        cfg = parse(argv)
    except GatewayFlagError as e:
        _fail(f"Error: {e}", sys.stderr)
    logs.setup()
    endpoints, remotes = _discover(cfg) if cfg.discovery_srv else ([], [])
    if not endpoints:
        endpoints = cfg.endpoints
    endpoints = strip_scheme(endpoints)
    if not remotes:
        for ep in endpoints:
            try:
                host, port = split_host_port(ep)
                remotes.append(Remote(host, int(port)))
            except ValueError:
                _fail(f"error parsing endpoint {ep!r}")
    try:
        lhost, lport = split_host_port(cfg.listen_addr)
    except ValueError:
        _fail(f"failed to validate listen address: {cfg.listen_addr}")
    try:
        laddrs = {a[4][0] for a in socket.getaddrinfo(lhost or None, None)}
    except OSError:
        _fail(f"failed to resolve listen host: {lhost}")
    for r in remotes:
        if str(r.port) != lport:
            continue
        try:
            eaddrs = {a[4][0] for a in socket.getaddrinfo(r.host, None)}
        except OSError:
            _fail(f"failed to resolve endpoint host: {r.host}")
        for ea in sorted(eaddrs & laddrs):
            _fail(f"SRV or endpoint ({r.host}:{r.port}->{ea}:{r.port}) should not resolve "
                  f"to the gateway listen addr ({cfg.listen_addr})")
    if not endpoints:
        _fail("no endpoints found")
    run_loop(_serve(cfg, lhost, int(lport), remotes))


async def _serve(cfg, host: str, port: int, remotes: list) -> None:
    proxy = TCPProxy(remotes, cfg.retry_delay)
    try:
        server = await asyncio.start_server(proxy.serve, host or None, port)
    except OSError as e:
        _fail(f"listen tcp {cfg.listen_addr}: bind: {e.strerror.lower()}", sys.stderr)
    log.info("ready to proxy client requests",
             extra=logs.fields(endpoints=[r.addr for r in remotes]))
    sdnotify.notify("READY=1")
    monitor = asyncio.ensure_future(proxy.monitor())
    try:
        async with server:
            await server.serve_forever()
    finally:
        monitor.cancel()
