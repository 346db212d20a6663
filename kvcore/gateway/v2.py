"""The v2 HTTP API on the client port (--enable-v2): /v2/keys, /v2/members,
/v2/machines, /v2/stats, /v2/auth. The worker hands each request, with its
Basic credentials and client certificate CN, to the core (kvcore/services/v2.py),
which parses it as etcd 3.4's v2http does, checks v2 auth, applies it and
returns the answer."""
from __future__ import annotations

import asyncio
import json
from typing import Awaitable, Callable, Optional
from urllib.parse import parse_qsl, urlencode

from kvcore.engine.base import CLIENT_CN_HEADER, GrpcError
from kvcore.v2store import V2Error, goform

_JSON = "application/json"
_NOT_ALLOWED_HEADERS = [("Content-Type", "text/plain; charset=utf-8"),
                        ("X-Content-Type-Options", "nosniff")]


def _not_allowed(allow: str):
    """etcd's allowMethod: the methods as it lists them, and Go's http.Error."""
    return 405, [("Allow", allow)] + _NOT_ALLOWED_HEADERS, b"Method Not Allowed\n"


class V2Handler:
    """``call(payload) -> awaitable answer bytes`` reaches the core's V2 service;
    ``cancel(that awaitable)`` tells the core its caller went away (a wait's watcher
    is then removed, as etcd removes it when the client closes)."""

    def __init__(self, call: Callable[[bytes], Awaitable[bytes]],
                 cancel: Optional[Callable[[Awaitable[bytes]], None]] = None):
        self._call = call
        self._cancel = cancel

    def serves(self, path: str) -> bool:
        return path.startswith(("/v2/keys/", "/v2/auth/", "/v2/members/")) or path in (
            "/v2/keys", "/v2/auth", "/v2/members", "/v2/machines", "/v2/stats/self",
            "/v2/stats/leader", "/v2/stats/store")

    async def __call__(self, method: str, target: str, headers, body: bytes):
        path, _, query = target.partition("?")
        if method == "OPTIONS":      # etcd's CORS handler answers it before any route
            return 200, [], b""
        moved = goform.path_redirect(method, path, query)
        if moved is not None:        # Go's ServeMux: a path that is not clean
            return moved
        # Who asks: v2 auth's Basic credentials or client certificate.
        who = {"authz": headers.get("authorization", ""),
               "cn": headers.get(CLIENT_CN_HEADER, "")}
        if path == "/v2/auth" or path.startswith("/v2/auth/"):
            return await self._ask(dict(who, kind="auth", method=method, path=path,
                                        body=body.decode("latin-1")))
        if path.startswith("/v2/stats/"):
            if method != "GET":
                return _not_allowed("GET")
            return await self._ask({"kind": "stats", "which": path[len("/v2/stats/"):]})
        if path == "/v2/machines":
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET,HEAD")
            ans = await self._ask({"kind": "members"})
            members = json.loads(ans[2])["members"]
            urls = [u for m in members for u in m["clientURLs"]]
            return 200, [("Content-Type", "text/plain; charset=utf-8")], ", ".join(urls).encode()
        if path == "/v2/members" or path.startswith("/v2/members/"):
            if method in ("POST", "DELETE", "PUT"):      # root only when auth is on
                return await self._ask(dict(who, kind="members", write=True, method=method,
                                            path=path, body=body.decode("latin-1"),
                                            ct=headers.get("content-type", "")))
            return await self._members(method, path)
        if method not in ("HEAD", "GET", "PUT", "POST", "DELETE"):
            return _not_allowed("HEAD,GET,PUT,POST,DELETE")
        # The core parses (its answer carries the cluster id even for a bad request).
        # A GET may be a wait: its headers come first, then its event (services/v2.py).
        req = dict(who, kind="keys", method="GET" if method == "HEAD" else method,
                   target=target, body=body.decode("latin-1"),
                   ct=headers.get("content-type", ""), park=method == "GET")
        status, hdrs, out, token = await self._ask_with_park(req)
        if token is None:
            return status, hdrs, out
        return status, hdrs, self._events(req, out, token, _is_stream_watch(target))

    async def _members(self, method: str, path: str):
        """etcd's membersHandler for reads: the list, the leader, else 404 JSON.
        (Changes go to the core: kvcore/services/v2_members.py.)"""
        if method != "GET":
            return _not_allowed("GET,POST,DELETE,PUT")
        sub = path[len("/v2/members"):].lstrip("/")
        if sub not in ("", "leader"):
            return 404, [("Content-Type", _JSON),
                         ("X-Etcd-Cluster-Id", await self._cluster_id())], b'{"message":"Not found"}'
        return await self._ask({"kind": "members", "leader": sub == "leader"})

    async def _cluster_id(self) -> str:
        ans = await self._ask({"kind": "members"})
        return dict(ans[1]).get("X-Etcd-Cluster-Id", "")

    async def _events(self, req: dict, body: bytes, token: int, stream: bool):
        """A wait's chunked body, after its headers: its event (at once, or claimed
        from the core with ``token``); with stream=true every next one too, each a
        wait from the index after the last one delivered (etcd's streaming watch)."""
        while True:
            if token:
                st, _, body = await self._ask({"kind": "claim", "token": token})
                if st != 200:
                    return
            yield body
            if not stream:
                return
            nxt = json.loads(body)["node"]["modifiedIndex"] + 1
            path, _, query = req["target"].partition("?")
            q = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "waitIndex"]
            q.append(("waitIndex", str(nxt)))
            nxt_req = dict(req, target=path + "?" + urlencode(q), more=True)
            st, _, body, token = await self._ask_with_park(nxt_req)
            if st != 200:
                return

    async def _ask_with_park(self, req: dict):
        """(status, headers, body, park): park is None unless the answer is a wait's,
        0 when its event came with it, else the token to claim the event with."""
        fut = None
        try:
            fut = self._call(json.dumps(req).encode())
            raw = await fut
        except asyncio.CancelledError:
            if self._cancel is not None and fut is not None:
                self._cancel(fut)
            raise
        except GrpcError as e:
            err = V2Error(300, e.message)
            return err.status, [("Content-Type", _JSON)], err.body(), None
        ans = json.loads(raw)
        return ans["s"], [tuple(h) for h in ans["h"]], ans["b"].encode(), ans.get("park")

    async def _ask(self, req: dict):
        return (await self._ask_with_park(req))[:3]


def _is_stream_watch(target: str) -> bool:
    q = dict(parse_qsl(target.partition("?")[2]))
    return q.get("wait") in ("true", "1", "t", "T", "TRUE", "True") and \
        q.get("stream") in ("true", "1", "t", "T", "TRUE", "True")
