"""/metrics, /health, /livez and /readyz: the routing the core does for every HTTP
probe (from a worker's client port or from its own metrics listener), and the
small HTTP/1.1 listener of ``--listen-metrics-urls`` (http, or https with the
client TLS configuration, as etcd's serveMetrics)."""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Optional
from urllib.parse import urlparse

from kvcore import health
from kvcore.metrics.scrape import CONTENT_TYPE, scrape

log = logging.getLogger("kvcore.metrics")

_HEAD = struct.Struct("<HH")   # status, header block length


def handles(path: str) -> bool:
    return path == "/metrics" or health.is_health_path(path)


async def route(core, method: str, target: str, extensive: bool) -> tuple[int, list, bytes]:
    path, _, query = target.partition("?")
    if path == "/metrics":
        return 200, [("Content-Type", CONTENT_TYPE)], await scrape(core, extensive)
    if health.is_health_path(path):
        return await health.answer(core, method, path, query)
    return 404, [("Content-Type", "text/plain; charset=utf-8")], b"404 page not found\n"


# ---- over the worker IPC: "METHOD target" in, status + headers + body out ----

def pack_request(method: str, target: str) -> bytes:
    return f"{method} {target}".encode()


def unpack_request(payload: bytes) -> tuple[str, str]:
    method, _, target = payload.decode(errors="replace").partition(" ")
    return method, target


def pack_response(status: int, headers: list, body: bytes) -> bytes:
    hb = "\n".join(f"{k}: {v}" for k, v in headers).encode()
    return _HEAD.pack(status, len(hb)) + hb + body


def unpack_response(payload: bytes) -> tuple[int, list, bytes]:
    status, n = _HEAD.unpack_from(payload)
    hb = payload[_HEAD.size:_HEAD.size + n].decode()
    headers = [tuple(line.split(": ", 1)) for line in hb.split("\n") if line]
    return status, headers, payload[_HEAD.size + n:]


# ---- the --listen-metrics-urls listener ----

_REASON = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable",
           400: "Bad Request"}


class MetricsListener:
    def __init__(self, core, urls: list[str], tls_info, extensive: bool):
        self.core = core
        self.urls = urls
        self.tls = tls_info
        self.extensive = extensive
        self.servers: list = []

    async def start(self) -> None:
        for url in self.urls:
            u = urlparse(url)
            ctx = None
            if u.scheme == "https":
                if self.tls is None or self.tls.empty():
                    raise SystemExit(f"kvcore: TLS key/cert (--cert-file, --key-file) must be "
                                     f"provided for metrics URL {url} with HTTPS")
                ctx = self.tls.server_context()
            try:
                srv = await asyncio.start_server(self._serve, u.hostname, u.port, ssl=ctx,
                                                 reuse_address=True)
            except OSError as e:
                raise SystemExit(f"kvcore: listen on metrics URL {url}: {e.strerror}")
            self.servers.append(srv)
            log.info("serving metrics on %s", url)

    async def close(self) -> None:
        for srv in self.servers:
            srv.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = writer.get_extra_info("sslcontext")
        check = getattr(ctx, "peer_check", None)   # CRL, allowed CN (kvcore/tls_policy.py)
        if check is not None and check(writer.get_extra_info("peercert")):
            writer.close()
            return
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                parts = line.decode("latin-1").split()
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if len(parts) != 3:
                    await self._write(writer, 400, [], b"400 Bad Request", close=True)
                    return
                n = int(headers.get("content-length", "0") or 0)
                if n:
                    await reader.readexactly(n)
                status, hdrs, body = await route(self.core, parts[0], parts[1], self.extensive)
                close = headers.get("connection", "").lower() == "close" or parts[2] == "HTTP/1.0"
                await self._write(writer, status, hdrs, body if parts[0] != "HEAD" else b"", close)
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _write(writer, status: int, headers: list, body: bytes, close: bool) -> None:
        head = [f"HTTP/1.1 {status} {_REASON.get(status, '')}"]
        head += [f"{k}: {v}" for k, v in headers]
        head.append(f"Content-Length: {len(body)}")
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()


def start_listener(core, cfg) -> Optional[MetricsListener]:
    urls = cfg.listen_metrics_urls or []
    if isinstance(urls, str):
        urls = [u.strip() for u in urls.split(",") if u.strip()]
    if not urls:
        return None
    return MetricsListener(core, urls, cfg.client_tls, cfg.metrics == "extensive")
