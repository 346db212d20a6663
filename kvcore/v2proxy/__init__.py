"""etcd's v2 proxy (etcd 3.5 etcdmain.startProxy + proxy/httpproxy): an HTTP reverse
proxy on the client URLs that forwards every request (the v2 keys API, /version,
/health, the JSON gateway; not gRPC) to the cluster's client URLs.

Run by ``--proxy on|readonly`` on a data dir that is not a member's, by
``--discovery-fallback proxy`` when discovery finds the cluster full, and on restart
of a data dir holding ``proxy/`` (etcd's identifyDataDirOrDie). The peer URLs come
from ``<data-dir>/proxy/cluster`` if there is one, else from discovery or
--initial-cluster; the client URLs are asked from the peers (kvcore's member lane,
``server.peer.fetch_members``) at start and every --proxy-refresh-interval, and the
cluster file is rewritten from the answer, as etcd does. An endpoint that fails is
skipped for --proxy-failure-wait. readonly answers anything but GET with 501.

Threads (http.server): a proxy holds long polls (v2 watches) open, one thread each.
"""
from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

from kvcore import logs

log = logging.getLogger("kvcore.v2proxy")

HOP_HEADERS = ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade")
DEFAULT_REFRESH = 30.0   # etcd: below it the interval is used as is


class Director:
    """etcd's director: the client URLs, shuffled, each skipped for ``failure_wait``
    after a failure; refreshed in the background."""

    def __init__(self, urls: Callable[[], list], failure_wait: float, refresh: float):
        self._urls = urls
        self.failure_wait = failure_wait
        self._lock = threading.Lock()
        self._eps: list = []          # [url, failed_until]
        self.refresh()
        threading.Thread(target=self._loop, args=(refresh,), daemon=True).start()

    def refresh(self) -> None:
        eps = [[u, 0.0] for u in self._urls()]
        random.shuffle(eps)
        with self._lock:
            self._eps = eps

    def _loop(self, interval: float) -> None:
        announced = False
        while True:
            eps = self.endpoints()
            wait = interval
            if interval >= DEFAULT_REFRESH and not eps:
                wait = 1.0
            if eps and not announced:
                announced = True
                log.info("endpoints found", extra=logs.fields(endpoints=eps))
            time.sleep(wait)
            self.refresh()

    def endpoints(self) -> list:
        now = time.monotonic()
        with self._lock:
            return [u for u, until in self._eps if until <= now]

    def failed(self, url: str) -> None:
        with self._lock:
            for ep in self._eps:
                if ep[0] == url:
                    ep[1] = time.monotonic() + self.failure_wait
        log.info("marked endpoint unavailable", extra=logs.fields(endpoint=url))


def _http_error(handler, status: int, message: str) -> None:
    """etcd's httptypes.HTTPError.WriteTo."""
    body = json.dumps({"message": message}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def make_handler(director: Director, readonly: bool, dial_timeout: float,
                 write_timeout: Optional[float], read_timeout: Optional[float]):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _serve(self):
            if readonly and self.command != "GET":
                self.send_response(501)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = [(k, v) for k, v in self.headers.items()
                       if k.lower() not in HOP_HEADERS and k.lower() != "x-forwarded-for"]
            prior = self.headers.get_all("X-Forwarded-For") or []
            headers.append(("X-Forwarded-For", ", ".join(prior + [self.client_address[0]])))
            eps = director.endpoints()
            if not eps:
                log.info("zero endpoints currently available")
                return _http_error(self, 503, "httpproxy: zero endpoints currently available")
            for ep in eps:
                u = urlsplit(ep)
                cls = http.client.HTTPSConnection if u.scheme == "https" else \
                    http.client.HTTPConnection
                conn = cls(u.hostname, u.port, timeout=dial_timeout)
                try:
                    conn.connect()
                    conn.sock.settimeout(write_timeout)
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                    for k, v in headers:
                        conn.putheader(k, v)
                    if body or self.command in ("PUT", "POST"):
                        conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body or None)
                    conn.sock.settimeout(read_timeout)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    log.info("failed to direct request", extra=logs.fields(url=ep, error=str(e)))
                    director.failed(ep)
                    continue
                try:
                    self._relay(resp)
                finally:
                    conn.close()
                return
            msg = f"unable to get response from {len(eps)} endpoint(s)"
            log.info(msg)
            _http_error(self, 502, "httpproxy: " + msg)

        def _relay(self, resp) -> None:
            """Headers, then the body as it comes (a v2 watch answers late)."""
            self.send_response(resp.status)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                    self.send_header(k, v)
            if length is not None:
                self.send_header("Content-Length", length)
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                if length is None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
                self.wfile.flush()
            if length is None:
                self.wfile.write(b"0\r\n\r\n")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler


def _peer_client_urls(peer_urls: list, cluster_file: str, tls) -> Callable[[], list]:
    """etcd's uf: the members' client URLs from any peer; rewrites the cluster file."""
    state = {"peers": list(peer_urls)}

    def urls() -> list:
        from kvcore.server.peer import fetch_members
        info = asyncio.run(fetch_members(state["peers"], tls=tls))
        if info is None:
            log.warning("failed to get cluster from remote peers",
                        extra=logs.fields(peer_urls=state["peers"],
                                          error="could not retrieve cluster information "
                                                "from the given URLs"))
            return []
        members = info.get("members", [])
        peers = sorted(u for m in members for u in m.get("peerURLs", []))
        _write_cluster_file(cluster_file, peers)
        if peers != sorted(state["peers"]):
            log.info("proxy updated peer URLs",
                     extra=logs.fields(**{"from": state["peers"], "to": peers}))
        state["peers"] = peers
        return sorted(u for m in members for u in m.get("clientURLs", []))
    return urls


def _write_cluster_file(path: str, peers: list) -> None:
    tmp = path + ".bak"
    with open(tmp, "w") as f:
        json.dump({"PeerURLs": peers}, f)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run(cfg, discovered: Optional[Callable[[], str]] = None) -> None:
    """Serve as the v2 proxy until SIGTERM/SIGINT; never returns. ``discovered``
    gives the cluster (name=url,...) from the discovery service when there is no
    cluster file yet."""
    from kvcore.discovery.v2 import parse_urls_map
    log.info("v2 API proxy starting")
    proxy_dir = os.path.join(cfg.data_dir, "proxy")
    os.makedirs(proxy_dir, exist_ok=True)
    cluster_file = os.path.join(proxy_dir, "cluster")
    try:
        with open(cluster_file) as f:
            peers = json.load(f)["PeerURLs"]
        if cfg.discovery:
            log.warning("discovery token ignored since the proxy has already been "
                        "initialized; valid cluster file found",
                        extra=logs.fields(cluster_file=cluster_file))
        if cfg.discovery_srv:
            log.warning("DNS SRV discovery ignored since the proxy has already been "
                        "initialized; valid cluster file found",
                        extra=logs.fields(cluster_file=cluster_file))
        log.info("proxy using peer URLS from cluster file",
                 extra=logs.fields(peer_urls=peers, cluster_file=cluster_file))
    except FileNotFoundError:
        cluster = discovered() if discovered else cfg.initial_cluster
        peers = sorted(u for us in parse_urls_map(cluster).values() for u in us)
        log.info("proxy using peer URLS", extra=logs.fields(peer_urls=peers))
    read_timeout = cfg.proxy_read_timeout / 1000.0 or None
    from kvcore import tls
    director = Director(_peer_client_urls(peers, cluster_file, tls.peer_info(cfg)),
                        cfg.proxy_failure_wait / 1000.0, cfg.proxy_refresh_interval / 1000.0)
    handler = make_handler(director, cfg.proxy == "readonly", cfg.proxy_dial_timeout / 1000.0,
                           cfg.proxy_write_timeout / 1000.0 or None, read_timeout)
    servers = []
    for url in cfg.listen_client_urls:
        u = urlsplit(url)
        if u.scheme != "http":
            log.critical("the v2 proxy serves http client URLs only",
                         extra=logs.fields(url=url))
            sys.exit(1)
        try:
            srv = http.server.ThreadingHTTPServer((u.hostname, u.port), handler)
        except OSError as e:
            log.critical("listener failed", extra=logs.fields(
                error=f"listen tcp {u.hostname}:{u.port}: bind: {e.strerror}"))
            sys.exit(1)
        srv.daemon_threads = True
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        log.info("v2 proxy started listening on client requests",
                 extra=logs.fields(host=url))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from kvcore.server import sdnotify
    sdnotify.notify("READY=1")
    while not stop.wait(0.5):
        pass
    log.info("received signal; shutting down")
    for srv in servers:
        srv.shutdown()
    sys.exit(0)

