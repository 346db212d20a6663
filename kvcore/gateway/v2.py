"""The v2 HTTP API on the client port (--enable-v2): /v2/keys, /v2/members,
/v2/machines, /v2/stats, /v2/auth. The worker hands each request, with its
Basic credentials and client certificate CN, to the core (kvcore/services/v2.py),
which parses it as etcd 3.4's v2http does, checks v2 auth, applies it and
returns the answer."""
from __future__ import annotations

import json
from typing import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from kvcore.engine.base import CLIENT_CN_HEADER, GrpcError
from kvcore.v2store import V2Error

_JSON = "application/json"


class V2Handler:
    """``call(payload) -> awaitable answer bytes`` reaches the core's V2 service."""

    def __init__(self, call: Callable[[bytes], Awaitable[bytes]]):
        self._call = call

    def serves(self, path: str) -> bool:
        return path.startswith(("/v2/keys", "/v2/auth/")) or path in (
            "/v2/auth", 
            "/v2/members", "/v2/machines", "/v2/stats/self", "/v2/stats/leader",
            "/v2/stats/store")

    async def __call__(self, method: str, target: str, headers, body: bytes):
        path = target.split("?", 1)[0]
        # Who asks: v2 auth's Basic credentials or client certificate.
        who = {"authz": headers.get("authorization", ""),
               "cn": headers.get(CLIENT_CN_HEADER, "")}
        if path == "/v2/auth" or path.startswith("/v2/auth/"):
            return await self._ask(dict(who, kind="auth", method=method, path=path,
                                        body=body.decode("latin-1")))
        if path.startswith("/v2/stats/"):
            if method not in ("GET", "HEAD"):
                return 405, [("Allow", "GET, HEAD"),
                             ("Content-Type", "text/plain; charset=utf-8")], b"Method Not Allowed\n"
            return await self._ask({"kind": "stats", "which": path[len("/v2/stats/"):]})
        if path in ("/v2/members", "/v2/machines"):
            if method not in ("GET", "HEAD"):
                return 405, [("Allow", "GET, HEAD"),
                             ("Content-Type", "text/plain; charset=utf-8")], b"Method Not Allowed\n"
            ans = await self._ask({"kind": "members"})
            if path == "/v2/members":
                return ans
            members = json.loads(ans[2])["members"]
            urls = [u for m in members for u in m["clientURLs"]]
            return 200, [("Content-Type", "text/plain; charset=utf-8")], ", ".join(urls).encode()
        if method not in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            return 405, [("Allow", "GET, HEAD, POST, PUT, DELETE"),
                         ("Content-Type", "text/plain; charset=utf-8")], b"Method Not Allowed\n"
        # The core parses (its answer carries the cluster id even for a bad request).
        req = dict(who, kind="keys", method="GET" if method == "HEAD" else method,
                   target=target, body=body.decode("latin-1"),
                   ct=headers.get("content-type", ""))
        ans = await self._ask(req)
        if method == "GET" and ans[0] == 200 and _is_stream_watch(target):
            return ans[0], ans[1], self._stream(req, ans[2])
        return ans

    async def _stream(self, req: dict, first: bytes):
        """wait=true&stream=true: every next event on one chunked answer, each a
        wait from the index after the last one delivered (etcd's streaming watch)."""
        body = first
        while True:
            yield body
            nxt = json.loads(body)["node"]["modifiedIndex"] + 1
            path, _, query = req["target"].partition("?")
            q = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "waitIndex"]
            q.append(("waitIndex", str(nxt)))
            st, _, body = await self._ask(dict(req, target=path + "?" + urlencode(q)))
            if st != 200:
                return

    async def _ask(self, req: dict):
        try:
            raw = await self._call(json.dumps(req).encode())
        except GrpcError as e:
            err = V2Error(300, e.message)
            return err.status, [("Content-Type", _JSON)], err.body()
        ans = json.loads(raw)
        return ans["s"], [tuple(h) for h in ans["h"]], ans["b"].encode()


def _is_stream_watch(target: str) -> bool:
    q = dict(parse_qsl(target.partition("?")[2]))
    return q.get("wait") in ("true", "1", "t", "T", "TRUE", "True") and \
        q.get("stream") in ("true", "1", "t", "T", "TRUE", "True")
