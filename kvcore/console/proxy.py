"""``kvcore-console --endpoints URL[,URL] --listen HOST:PORT``: the console page in
front of any etcd-compatible members (kvcore or real etcd).

It serves /ui/ from the package and forwards /v3/*, /metrics and /health to the first endpoint
that answers, streaming the response through (so /v3/watch stays live). Nothing else
is forwarded: the page cannot be used to reach other URLs.
"""
from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kvcore.console import assets

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade",
        "proxy-authorization", "proxy-authenticate", "trailer", "host", "content-length",
        "date"}   # (the member's Date: http.server writes its own)
_MAX_BODY = 8 * 1024 * 1024      # above etcd's largest request plus base64


class Upstream:
    """The endpoints, tried in order from the last one that answered."""

    def __init__(self, urls: list[str], cafile: str | None = None, insecure: bool = False):
        self.urls = [u if "://" in u else "http://" + u for u in urls]
        self.good = 0
        self.ctx = ssl.create_default_context(cafile=cafile)
        if insecure:
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE

    def connect(self, method: str, path: str, body: bytes, headers: dict):
        last = None
        for i in range(len(self.urls)):
            idx = (self.good + i) % len(self.urls)
            u = urllib.parse.urlsplit(self.urls[idx])
            if u.scheme == "https":
                conn = http.client.HTTPSConnection(u.hostname, u.port or 2379, timeout=10,
                                                   context=self.ctx)
            else:
                conn = http.client.HTTPConnection(u.hostname, u.port or 2379, timeout=10)
            try:
                conn.request(method, path, body=body if method == "POST" else None,
                             headers=headers)
                resp = conn.getresponse()
            except OSError as e:
                conn.close()
                last = e
                continue
            self.good = idx
            return conn, resp
        raise ConnectionError(f"no endpoint answered: {last}")


class Handler(BaseHTTPRequestHandler):
    upstream: Upstream
    protocol_version = "HTTP/1.1"
    server_version = "kvcore-console"

    def log_message(self, fmt, *args):   # quiet: one line per request is noise here
        pass

    def _send(self, status: int, headers: list, body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(302, [("Location", "/ui/")], b"")
        if path == "/ui" or path.startswith("/ui/"):
            return self._send(*assets.serve(path))
        if path in ("/metrics", "/health"):
            return self._forward("GET", b"")
        self._send(404, [("Content-Type", "text/plain")], b"404 page not found\n")

    def do_POST(self):
        if not self.path.startswith("/v3/"):
            return self._send(404, [("Content-Type", "text/plain")], b"404 page not found\n")
        n = int(self.headers.get("Content-Length") or 0)
        if n > _MAX_BODY:
            return self._send(413, [("Content-Type", "text/plain")], b"request too large\n")
        self._forward("POST", self.rfile.read(n))

    def _forward(self, method: str, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Content-Length"] = str(len(body))
        try:
            conn, resp = self.upstream.connect(method, self.path, body, headers)
        except ConnectionError as e:
            return self._send(502, [("Content-Type", "application/json")], json.dumps(
                {"error": str(e), "code": 14, "message": str(e)}).encode())
        try:
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP:
                    self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            conn.sock.settimeout(None)       # a watch stays open as long as the page wants
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True     # the page went away (a closed watch)
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kvcore-console",
                                 description="The kvcore web console in front of etcd endpoints.")
    ap.add_argument("--endpoints", default="http://127.0.0.1:2379",
                    help="comma-separated client URLs of the members")
    ap.add_argument("--listen", default="127.0.0.1:8379",
                    help="host:port the console listens on")
    ap.add_argument("--cacert", help="CA bundle to verify https endpoints")
    ap.add_argument("--insecure-skip-tls-verify", action="store_true")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    Handler.upstream = Upstream([u.strip() for u in a.endpoints.split(",") if u.strip()],
                                a.cacert, a.insecure_skip_tls_verify)
    srv = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    srv.daemon_threads = True
    print(f"kvcore-console: serving http://{host or '127.0.0.1'}:{port}/ui/ "
          f"for {a.endpoints}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
