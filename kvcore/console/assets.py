"""The console's static files, read once from the package: ``serve(path)`` answers a
request under /ui/ with (status, headers, body) like the JSON gateway does."""
from __future__ import annotations

import os
from functools import lru_cache

STATIC = os.path.join(os.path.dirname(__file__), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# The page loads nothing from elsewhere; the policy says so to the browser too.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'")


@lru_cache(maxsize=None)
def _read(name: str) -> bytes | None:
    path = os.path.join(STATIC, name)
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(STATIC):
        return None     # no way out of static/ (no "..", no subfolders)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def serve(path: str) -> tuple[int, list, bytes]:
    if path == "/ui":
        return 301, [("Location", "/ui/"), ("Content-Type", "text/plain")], b"/ui/\n"
    name = path[len("/ui/"):] or "index.html"
    body = _read(name) if "/" not in name else None
    if body is None:
        return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
    ctype = _TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
    return 200, [("Content-Type", ctype), ("Content-Security-Policy", _CSP),
                 ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-cache")], body
