"""etcd's HTTP answers on the peer port, for operators and scripts that ask a member
there (`curl http://member:2380/version`, `/members`, `/raft/probing`).

kvcore's members talk to each other in their own framed protocol
(kvcore/server/peer.py); a connection that opens with an HTTP/1.x request line
instead is handed here and answered as etcd 3.5.1's peer handler answers it: the
version, the member list with X-Etcd-Cluster-Id, the probing health, whether a
downgrade is enabled, the HashKV of /members/hashkv, and Go's ServeMux answers (404,
405 with Allow, 301 to the cleaned path) for the rest. The rafthttp endpoints
(/raft, /raft/stream/, /raft/snapshot) answer 412 "incompatible version" as etcd
does to a peer that is not an etcd member; kvcore forwards leases and promotions
on its own protocol, so /leases and /members/promote/ answer as an etcd member
that cannot take them (see docs/decisions.md, "The peer port answers etcd's HTTP
requests").

The connection stays open for the next request as Go's server keeps it (HTTP/1.1,
or HTTP/1.0 with keep-alive), until the client closes or is idle for IDLE_TIMEOUT.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from typing import Callable, Optional
from urllib.parse import quote, unquote

from google.protobuf.message import DecodeError

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2

log = logging.getLogger("kvcore.peer")

IDLE_TIMEOUT = 300.0        # etcd's peer server: ReadTimeout 5 minutes
MAX_BODY = 1 << 20           # a larger body is not read: answer, then close
_TEXT = "text/plain; charset=utf-8"
_REASONS = {100: "Continue", 200: "OK", 301: "Moved Permanently", 400: "Bad Request",
            404: "Not Found", 405: "Method Not Allowed", 412: "Precondition Failed",
            431: "Request Header Fields Too Large"}
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_METHOD = re.compile(rb"[A-Z]{1,7}( |$)|[A-Z]{8}$")
_CLUSTER_VERSION = ETCD_VERSION[:-1] + "0"       # as the client port's /version says
_MIN_CLUSTER_VERSION = (3, 0)                    # etcd's version.MinClusterVersion


def is_request(head: bytes) -> bool:
    """Whether a connection's first 8 bytes start an HTTP/1.x request line (a method
    token, then a space unless the token fills them)."""
    return bool(_METHOD.match(head))


class Reply:
    """A response as Go's server writes it: the handler's headers (sorted by Go),
    then Date and Content-Length, then a Content-Type Go sniffed from the body."""

    def __init__(self, status: int, headers: Optional[dict] = None, body: bytes = b"",
                 sniffed_type: str = ""):
        self.status, self.headers, self.body = status, dict(headers or {}), body
        self.sniffed_type = sniffed_type


def go_error(status: int, text: str, **headers) -> Reply:
    """Go's http.Error: plain text, nosniff, the message and a newline."""
    return Reply(status, {**_header_names(headers), "Content-Type": _TEXT,
                          "X-Content-Type-Options": "nosniff"}, text.encode() + b"\n")


def _header_names(kw: dict) -> dict:
    return {k.replace("_", "-"): v for k, v in kw.items()}


def _not_allowed(allow: Optional[str] = None) -> Reply:
    return go_error(405, "Method Not Allowed", **({"Allow": allow} if allow else {}))


def _not_found() -> Reply:
    return go_error(404, "404 page not found")


def _go_json(obj) -> bytes:
    """encoding/json's bytes: compact, UTF-8, <>& and U+2028/9 escaped."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, esc)
    return s.encode()


def _rfc3339_nano(ns: int) -> str:
    """Go's time.Time JSON form in UTC: nanoseconds with trailing zeros dropped."""
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def clean_path(p: str) -> str:
    """Go's ServeMux cleanPath: path.Clean, keeping a trailing slash."""
    if not p:
        return "/"
    if p[0] != "/":
        p = "/" + p
    out: list = []
    for seg in p.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg not in ("", "."):
            out.append(seg)
    clean = "/" + "/".join(out)
    return clean + "/" if p.endswith("/") and clean != "/" else clean


def _redirect(method: str, path: str, suffix: str = "") -> Reply:
    """Go's http.Redirect with 301 to the path (escaped again, as url.URL.String
    does) and the query (a body for GET only)."""
    location = quote(path, safe="/$&+,:;=@!'()*~") + suffix
    if method not in ("GET", "HEAD"):
        return Reply(301, {"Location": location})
    href = location.replace("&", "&amp;").replace("'", "&#39;").replace('"', "&#34;")
    body = f'<a href="{href}">Moved Permanently</a>.\n\n'.encode("latin-1")
    return Reply(301, {"Content-Type": "text/html; charset=utf-8", "Location": location},
                 body if method == "GET" else b"")


def _version(text: str) -> Optional[tuple]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2])) if m else None


# etcd's outer peer mux and the raft handler's own mux (exact patterns; those with a
# trailing slash also match the paths below them)
_OUTER = ("/", "/raft", "/raft/", "/members", "/members/promote/", "/leases",
          "/leases/internal", "/downgrade/enabled", "/members/hashkv", "/version")
_RAFT = ("/raft", "/raft/stream/", "/raft/snapshot", "/raft/probing")


def _match(patterns, path: str) -> Optional[str]:
    if path in patterns:
        return path
    best = None
    for p in patterns:
        if p.endswith("/") and path.startswith(p) and (best is None or len(p) > len(best)):
            best = p
    return best


def _slash_redirect(patterns, path: str) -> bool:
    return path not in patterns and path + "/" in patterns and not path.endswith("/")


class PeerHTTP:
    """Answers HTTP requests for one member: ``members_info()`` -> {"cluster_id",
    "members": [member JSON]}, ``hash_kv(revision)`` -> kvcore's HashKV dict."""

    def __init__(self, members_info: Callable[[], dict],
                 hash_kv: Callable[[], Optional[Callable[[int], dict]]]):
        self._members_info = members_info
        self._hash_kv = hash_kv

    # ---- the connection ----

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    head: bytes) -> None:
        """Answer requests on a connection whose first bytes (``head``) were read."""
        buffered = head
        while True:
            try:
                raw = buffered + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                        IDLE_TIMEOUT)
            except asyncio.LimitOverrunError:
                await self._write_bare(writer, 431)
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                return
            buffered = b""
            request = _parse_head(raw)
            if request is None:
                await self._write_bare(writer, 400)
                return
            method, target, proto, headers = request
            if proto == "HTTP/1.1" and "host" not in headers:
                await self._write_bare(writer, 400, ": missing required Host header")
                return
            if _BAD_ESCAPE.search(target.partition("?")[0]):
                await self._write_bare(writer, 400)    # Go cannot parse the URL
                return
            body, whole = await _read_body(reader, writer, headers)
            if body is None:
                await self._write_bare(writer, 400)
                return
            try:
                reply = self.answer(method, target, headers, body)
            except Exception:   # a bug here: close, as Go's server does on a panic
                log.exception("answering %s %s on the peer port", method, target[:200])
                return
            keep = whole and _keep_alive(proto, headers) and \
                reply.headers.get("Connection") != "close"
            writer.write(_serialize(reply, method, proto, headers, keep))
            await writer.drain()
            if not keep:
                return

    @staticmethod
    async def _write_bare(writer, status: int, detail: str = "") -> None:
        """Go's answer to a request it cannot parse (no handler runs)."""
        text = f"{status} {_REASONS[status]}{detail}"
        writer.write(f"HTTP/1.1 {text}\r\nContent-Type: {_TEXT}\r\nConnection: close\r\n"
                     f"\r\n{text}".encode())
        await writer.drain()

    # ---- the handlers ----

    def answer(self, method: str, target: str, headers: dict, body: bytes) -> Reply:
        """The reply etcd 3.5.1's peer handler gives to one request."""
        if target == "*":    # Go's server: only OPTIONS * is answered
            if method == "OPTIONS":
                return Reply(200, {"Content-Length": "0"})
            return Reply(400, {"Connection": "close"})
        path, _, query = target.partition("?")
        path = unquote(path)
        suffix = "?" + query if query else ""
        if method != "CONNECT":
            clean = clean_path(path)
            if _slash_redirect(_OUTER, clean):
                return _redirect(method, clean + "/", suffix)
            if clean != path:
                return _redirect(method, clean, suffix)
        elif _slash_redirect(_OUTER, path):
            return _redirect(method, path + "/", suffix)
        pattern = _match(_OUTER, path)
        if pattern in ("/raft", "/raft/"):
            return self._raft(method, path, suffix, headers)
        if pattern == "/version":
            if method != "GET":
                return _not_allowed("GET")
            return Reply(200, {"Content-Type": "application/json"},
                         _go_json({"etcdserver": ETCD_VERSION, "etcdcluster": _CLUSTER_VERSION}))
        if pattern == "/members":
            if method != "GET":
                return _not_allowed("GET")
            info = self._members_info()
            return Reply(200, {"Content-Type": "application/json",
                               "X-Etcd-Cluster-Id": f"{info['cluster_id']:x}"},
                         _go_json([_member(m) for m in info["members"]]) + b"\n")
        if pattern == "/members/promote/":
            return self._promote(method, path)
        if pattern == "/downgrade/enabled":
            if method != "GET":
                return _not_allowed("GET")
            # kvcore has no downgrade: never enabled
            return Reply(200, {"Content-Type": "text/plain", "X-Etcd-Cluster-Id":
                               f"{self._members_info()['cluster_id']:x}"}, b"false")
        if pattern == "/members/hashkv":
            return self._hash(method, body)
        if pattern in ("/leases", "/leases/internal"):
            return self._lease(method, pattern, body)
        return _not_found()

    def _cluster_id(self) -> str:
        return f"{self._members_info()['cluster_id']:x}"

    def _raft(self, method: str, path: str, suffix: str, headers: dict) -> Reply:
        """rafthttp's own mux: the pipeline, stream and snapshot handlers, probing."""
        if _slash_redirect(_RAFT, path):
            return _redirect(method, path + "/", suffix)
        pattern = _match(_RAFT, path)
        if pattern == "/raft/probing":
            return Reply(200, {}, _go_json({"OK": True, "Now": _rfc3339_nano(time.time_ns())})
                         + b"\n", sniffed_type=_TEXT)
        if pattern is None:
            return _not_found()
        stream = pattern == "/raft/stream/"
        if method != ("GET" if stream else "POST"):
            return _not_allowed("GET" if stream else "POST")
        cid = self._cluster_id()
        extra = {"X-Server-Version": ETCD_VERSION} if stream else {}
        return go_error(412, _incompatible(headers, cid), X_Etcd_Cluster_Id=cid, **extra)

    def _promote(self, method: str, path: str) -> Reply:
        if method != "POST":
            return _not_allowed("POST")
        info = self._members_info()
        cid = f"{info['cluster_id']:x}"
        text = path[len("/members/promote/"):]
        if not text.isdigit() or int(text) >= 1 << 64:
            return go_error(404, f"member {text} not found in cluster", X_Etcd_Cluster_Id=cid)
        member = next((m for m in info["members"] if m["id"] == int(text)), None)
        if member is None:
            return go_error(404, "membership: ID not found", X_Etcd_Cluster_Id=cid)
        if not member.get("isLearner"):
            return go_error(412, "membership: can only promote a learner member",
                            X_Etcd_Cluster_Id=cid)
        # kvcore promotes through the Cluster service (etcdctl member promote) only
        return go_error(412, "etcdserver: can only promote a learner member which is in "
                             "sync with leader", X_Etcd_Cluster_Id=cid)

    def _hash(self, method: str, body: bytes) -> Reply:
        if method != "GET":
            return _not_allowed("GET")
        revision = _hash_revision(body)
        hash_kv = self._hash_kv()
        if revision is None or hash_kv is None:
            return go_error(400, "error unmarshalling request")
        got = hash_kv(revision)
        if "error" in got:
            return go_error(400, {"future": "mvcc: required revision is a future revision",
                                  "compacted": "mvcc: required revision has been compacted"}
                            .get(got["error"], got["error"]))
        resp = {"header": _omit_zero({"revision": got["revision"]}), "hash": got["hash"],
                "compact_revision": got["compact_revision"]}
        return Reply(200, {"Content-Type": "application/json",
                           "X-Etcd-Cluster-Id": self._cluster_id()},
                     _go_json(_omit_zero(resp)))

    @staticmethod
    def _lease(method: str, pattern: str, body: bytes) -> Reply:
        if method != "POST":
            return _not_allowed()
        parse = (rpc_pb2.LeaseKeepAliveRequest if pattern == "/leases"
                 else rpc_pb2.LeaseTimeToLiveRequest).FromString
        try:
            parse(body)
        except DecodeError:
            return go_error(400, "error unmarshalling request")
        # kvcore's followers ask the leader on their own lease lane: over HTTP every
        # member answers as an etcd follower does
        return go_error(400, "not a primary lessor")


def _member(m: dict) -> dict:
    """etcd's membership.Member JSON: learner, name and client URLs only when set."""
    out = {"id": m["id"], "peerURLs": m.get("peerURLs") or []}
    if m.get("isLearner"):
        out["isLearner"] = True
    if m.get("name"):
        out["name"] = m["name"]
    if m.get("clientURLs"):
        out["clientURLs"] = m["clientURLs"]
    return out


def _omit_zero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (0, {}, None)}


def _hash_revision(body: bytes) -> Optional[int]:
    """The revision of a HashKVRequest as encoding/json reads it (keys match without
    case; null is an empty request), or None where Go refuses the body."""
    try:
        req = json.loads(body)
    except ValueError:
        return None
    if req is None:
        return 0
    if not isinstance(req, dict):
        return None
    rev = next((v for k, v in req.items() if k.lower() == "revision"), 0)
    if rev is None:
        return 0
    if isinstance(rev, bool) or not isinstance(rev, int) or not -(1 << 63) <= rev < 1 << 63:
        return None
    return rev


def _incompatible(headers: dict, cluster_id: str) -> str:
    """rafthttp's checkClusterCompatibilityFromHeader, then kvcore's own refusal: a
    request that passes it still comes from an etcd member, which kvcore cannot serve."""
    server = _version(headers.get("x-server-version") or "2.0.0")
    min_cluster = _version(headers.get("x-min-cluster-version") or "2.0.0")
    if server is None or min_cluster is None or server < _MIN_CLUSTER_VERSION \
            or min_cluster > _version(ETCD_VERSION):
        return "incompatible version"
    if headers.get("x-etcd-cluster-id", "") != cluster_id:
        return "cluster ID mismatch"
    return "incompatible version"


# ---- HTTP/1.x framing ----

def _parse_head(raw: bytes):
    """(method, target, protocol, headers with lower-case names) or None."""
    try:
        lines = raw.decode("latin-1").split("\r\n")
        method, target, proto = lines[0].split(" ")
    except ValueError:
        return None
    if not re.fullmatch(r"HTTP/1\.[01]", proto) or not method or not target:
        return None
    if "://" in target and not target.startswith("/"):
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    headers: dict = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.setdefault(name.lower(), value.strip())
    return method, target, proto, headers


async def _read_body(reader, writer, headers: dict) -> tuple:
    """(body, whole): the request body (None when it cannot be framed), and whether
    all of it was read so the connection can carry another request."""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts, size = [], 0
            while True:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass    # trailers
                    return b"".join(parts), True
                size += n
                if size > MAX_BODY:
                    return b"", False
                parts.append((await reader.readexactly(n + 2))[:-2])
        length = headers.get("content-length", "0")
        if not length.isdigit():
            return None, False
        if int(length) > MAX_BODY:
            return b"", False
        return await asyncio.wait_for(reader.readexactly(int(length)), IDLE_TIMEOUT), True
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            asyncio.TimeoutError):
        return None, False


def _keep_alive(proto: str, headers: dict) -> bool:
    conn = headers.get("connection", "").lower()
    if proto == "HTTP/1.0":
        return "keep-alive" in conn
    return "close" not in conn


def _serialize(reply: Reply, method: str, proto: str, headers: dict, keep: bool) -> bytes:
    lines = [f"{proto} {reply.status} {_REASONS.get(reply.status, '')}"]
    lines += [f"{k}: {v}" for k, v in sorted(reply.headers.items())]
    lines.append("Date: " + email.utils.formatdate(usegmt=True))
    if "Content-Length" not in reply.headers and (method != "HEAD" or reply.body):
        lines.append(f"Content-Length: {len(reply.body)}")  # (unknown for a bare HEAD)
    if reply.sniffed_type:
        lines.append("Content-Type: " + reply.sniffed_type)
    if not keep and proto == "HTTP/1.1" and "Connection" not in reply.headers:
        lines.append("Connection: close")
    elif keep and proto == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    body = b"" if method == "HEAD" else reply.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
