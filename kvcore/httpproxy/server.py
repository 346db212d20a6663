"""etcd's v2 proxy (``--proxy on|readonly``, server/proxy/httpproxy): an HTTP
reverse proxy on the client URLs to the cluster's client URLs, tried in order
(one that fails is left out for --proxy-failure-wait); ``readonly`` answers 501 to
anything but GET. ``/v2/config/local/proxy`` lists the endpoints in use and
``/metrics`` is the proxy's own, as etcd serves them.

``serve(cfg)`` runs the proxy until cancelled (kvcore/server/main.py calls it
instead of starting a member)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from typing import Optional
from urllib.parse import urlparse

from kvcore.engine.base import CLIENT_CN_HEADER, CLIENT_TLS_HEADER, MethodTable
from kvcore.httpproxy.cluster import Cluster
from kvcore.httpproxy.director import Director

log = logging.getLogger("kvcore.httpproxy")

_JSON = "application/json"
# Not passed on in either direction (etcd's singleHopHeaders), and what the
# engine or this client sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailers", "transfer-encoding", "upgrade", "content-length",
        CLIENT_CN_HEADER, CLIENT_TLS_HEADER}


def _http_error(status: int, message: str) -> tuple:
    return status, [("Content-Type", _JSON)], json.dumps(
        {"message": message}, separators=(",", ":")).encode()


class Upstream:
    """One request to one endpoint over HTTP/1.1 (a fresh connection each time)."""

    def __init__(self, dial_timeout: float, read_timeout: float,
                 tls: Optional[ssl.SSLContext], write_timeout: float = 0.0):
        """Timeouts in seconds; a read or write timeout of 0 waits as long as it takes."""
        self.dial_timeout = dial_timeout
        self.read_timeout = read_timeout or None
        self.write_timeout = write_timeout or None
        self.tls = tls

    async def round_trip(self, url: str, method: str, target: str, headers: dict,
                         body: bytes) -> tuple:
        u = urlparse(url)
        secure = u.scheme == "https"
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            u.hostname, u.port or (443 if secure else 80),
            ssl=(self.tls or ssl.create_default_context()) if secure else None),
            self.dial_timeout)
        try:
            lines = [f"{method} {target} HTTP/1.1",
                     f"Host: {headers.get('host') or u.netloc}"]
            lines += [f"{k}: {v}" for k, v in headers.items()
                      if k not in _HOP and k != "host"]
            lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1") + body)
            await asyncio.wait_for(writer.drain(), self.write_timeout)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
        except BaseException:
            writer.close()
            raise
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        out, chunked, length = [], False, None
        for h in hlines:
            if ":" not in h:
                continue
            k, v = h.split(":", 1)
            k, v = k.strip(), v.strip()
            if k.lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
            elif k.lower() == "content-length":
                length = int(v)
            if k.lower() not in _HOP:
                out.append((k, v))
        if chunked:
            return status, out, self._chunks(reader, writer)
        try:
            if length is not None:
                data = await asyncio.wait_for(reader.readexactly(length), self.read_timeout)
            else:
                data = await asyncio.wait_for(reader.read(), self.read_timeout)
        finally:
            writer.close()
        return status, out, data

    async def _chunks(self, reader, writer):
        """A chunked answer passed on chunk by chunk (v2 streaming watches)."""
        try:
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = await reader.readexactly(size)
                await reader.readexactly(2)
                yield data
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            writer.close()


class ProxyHandler:
    """The engine's HttpHandler for the proxy's client URLs."""

    def __init__(self, director: Director, upstream: Upstream, readonly: bool):
        self.director = director
        self.upstream = upstream
        self.readonly = readonly

    async def __call__(self, method: str, target: str, headers, body: bytes):
        path = target.split("?", 1)[0]
        cors = [("Access-Control-Allow-Headers", "accept, content-type, authorization"),
                ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
                ("Access-Control-Allow-Origin", "*")]
        if path == "/metrics":
            from prometheus_client import generate_latest
            return 200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], \
                generate_latest()
        if method == "OPTIONS":
            return 200, cors, b""
        if self.readonly and method != "GET":
            return 501, [], b""
        st, hs, out = await self._serve(method, target, path, dict(headers), body)
        return st, cors + hs, out

    async def _serve(self, method, target, path, headers, body):
        if path == "/v2/config/local/proxy":
            if method != "GET":
                return 405, [("Allow", "GET"), ("Content-Type", "text/plain; charset=utf-8"),
                             ("X-Content-Type-Options", "nosniff")], b"Method Not Allowed\n"
            eps = [e.url for e in self.director.endpoints()]
            return 200, [], json.dumps({"endpoints": eps}, separators=(",", ":")).encode() \
                + b"\n"
        eps = self.director.endpoints()
        if not eps:
            log.info("zero endpoints currently available")
            return _http_error(503, "httpproxy: zero endpoints currently available")
        for ep in eps:
            try:
                return await self.upstream.round_trip(ep.url, method, target, headers, body)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    ValueError, IndexError) as e:
                log.info("failed to direct request",
                         extra={"fields": {"url": ep.url, "error": str(e)}})
                ep.failed()
        msg = f"unable to get response from {len(eps)} endpoint(s)"
        log.info(msg)
        return _http_error(502, "httpproxy: " + msg)


async def serve(cfg) -> None:
    from kvcore.engine import native
    from kvcore.engine.py_front import PyFront
    from kvcore.tls import client_info, peer_info

    log.info("v2 API proxy starting")
    peer_tls = peer_info(cfg)
    client_tls = client_info(cfg)
    # etcd's proxy dials the cluster's client URLs with the client TLS files, else
    # with the peer ones ("old proxy behavior").
    dial_tls = client_tls if client_tls is not None else (
        peer_tls if not peer_tls.empty() else None)
    cluster = Cluster(os.path.join(cfg.data_dir, "proxy"), cfg.initial_cluster,
                      cfg.proxy_dial_timeout / 1000.0, peer_tls)
    director = Director(cluster.client_urls, cfg.proxy_failure_wait / 1000.0,
                        cfg.proxy_refresh_interval / 1000.0)
    upstream = Upstream(cfg.proxy_dial_timeout / 1000.0, cfg.proxy_read_timeout / 1000.0,
                        dial_tls.client_context() if dial_tls is not None else None,
                        cfg.proxy_write_timeout / 1000.0)
    handler = ProxyHandler(director, upstream, cfg.proxy == "readonly")
    await director.start()
    engines = []
    for url in cfg.listen_client_urls:
        u = urlparse(url)
        if native.available():
            eng = native.NativeEngine(MethodTable(), http=handler)
        else:   # pure-Python mode: the native front's twin serves HTTP/1.x the same
            eng = PyFront(handler)
        ctx = client_tls.server_context() if u.scheme == "https" and client_tls else None
        await eng.start(u.hostname, u.port, ssl_context=ctx, alpn=("http/1.1",))
        engines.append(eng)
        log.info("v2 proxy started listening on client requests",
                 extra={"fields": {"host": url}})
    try:
        await asyncio.Event().wait()
    finally:
        director.stop()
        for eng in engines:
            await eng.stop(0.2)
