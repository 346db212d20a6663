"""The HTTP handler of the client port: /version, /debug/vars, the web console under
/ui/, etcd's JSON gateway under /v3/ (and /v3beta/), and /metrics, /health, /livez,
/readyz (answered by the core: kvcore/metrics/listener.py).

It serves the engine's ``HttpHandler`` contract (kvcore/engine/base.py): a body
is bytes, or an async iterator of chunks for a streaming route. Calls go through
the same MethodTable as gRPC, so the gateway and gRPC clients share one path.
"""
from __future__ import annotations

import os
import resource
import sys
from typing import Awaitable, Callable, Optional

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2
from kvcore.console import assets as console_assets
from kvcore.engine.base import (CLIENT_TLS_HEADER, CallContext, GrpcError, MethodTable,
                                StatusCode)
from kvcore.gateway import codec, streams
from kvcore.gateway.errors import error_body, http_status
from kvcore.gateway.routes import TABLE
from kvcore.metrics import listener as probes

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_NOT_FOUND = (404, [("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff")],
              b"Not Found\n")                      # grpc-gateway's, under /v3/
_NO_PAGE = (404, [("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff")],
            b"404 page not found\n")              # Go's http.ServeMux, elsewhere
_NOT_ALLOWED = (405, [("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff")],
                b"Method Not Allowed\n")
# What a successful gRPC call adds: its header metadata, as grpc-gateway forwards it.
_OK_HEADERS = [("Content-Type", _JSON), ("Grpc-Metadata-Content-Type", "application/grpc")]


class Gateway:
    """``Gateway(methods, probe, cors=..., max_recv=..., v2=...)``: ``methods`` is the
    worker's MethodTable, ``probe(method, target)`` answers /metrics and the health
    endpoints as (status, headers, body), ``cors`` is etcd's --cors origins ("*": any),
    ``max_recv`` the gRPC receive limit the gateway's requests obey too, ``ui`` whether
    the web console's files are served under /ui/ (--enable-ui), ``grpc_gateway``
    whether /v3/ is (--enable-grpc-gateway), ``host_whitelist`` etcd's
    --host-whitelist (None, empty or "*": any Host)."""

    def __init__(self, methods: MethodTable, probe: Callable[[str, str], Awaitable[tuple]],
                 cors: Optional[list] = None, max_recv: int = 0,
                 parent_pid: Optional[int] = None, v2=None, ui: bool = True,
                 grpc_gateway: bool = True, host_whitelist: Optional[list] = None):
        self._methods = methods
        self._probe = probe
        self._max_recv = max_recv
        self._parent_pid = parent_pid
        self._v2 = v2            # kvcore.gateway.v2.V2Handler with --enable-v2
        self._ui = ui
        origins = set(cors if cors is not None else ["*"])
        self._cors_any = "*" in origins
        self._cors = origins
        self._grpc_gateway = grpc_gateway
        hosts = set(host_whitelist or ())
        self._hosts = None if not hosts or "*" in hosts else hosts

    async def __call__(self, method: str, target: str, headers, body: bytes):
        path = target.split("?", 1)[0]
        if self._hosts is not None and not headers.get(CLIENT_TLS_HEADER):
            host = _hostname(headers.get("host", ""))
            if host not in self._hosts:    # etcd's accessController, plain HTTP only
                return 421, [("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff")], \
                    _rebinding_error(host)
        if probes.handles(path):
            try:
                status, hdrs, out = await self._probe(method, target)
            except GrpcError as e:   # the core is gone (stopping)
                status, hdrs, out = 503, [("Content-Type", _TEXT)], e.message.encode() + b"\n"
        elif self._v2 is not None and self._v2.serves(path):
            status, hdrs, out = await self._v2(method, target, headers, body)
        else:
            status, hdrs, out = await self._serve(method, path, headers, body)
        cors = self._cors_headers(headers)
        return status, (cors + hdrs) if cors else hdrs, out

    def _cors_headers(self, headers) -> list:
        # etcd's corsHandler: "*" answers any origin, else the request's if allowed.
        if self._cors_any:
            origin = "*"
        else:
            origin = headers.get("origin")
            if origin is None or origin not in self._cors:
                return []
        return [("Access-Control-Allow-Headers", "accept, content-type, authorization"),
                ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
                ("Access-Control-Allow-Origin", origin)]

    async def _serve(self, method: str, path: str, headers, body: bytes):
        if method == "OPTIONS":
            return 200, [], b""
        if path == "/version":
            if method != "GET":      # etcd's allowMethod(w, r, "GET")
                return 405, [("Allow", "GET")] + _NOT_ALLOWED[1], _NOT_ALLOWED[2]
            return 200, [("Content-Type", _JSON)], codec.dumps(
                {"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_VERSION[:-1] + "0"})
        if path == "/debug/vars":
            return 200, [("Content-Type", "application/json; charset=utf-8")], \
                await self._vars()
        if self._ui and (path == "/ui" or path.startswith("/ui/")) and method == "GET":
            return console_assets.serve(path)
        route = TABLE.get(path) if self._grpc_gateway else None
        if route is None and not self._grpc_gateway:
            return _NO_PAGE     # no /v3/ handler: etcd's "/" mux answers
        if route is None:
            if path.startswith(("/v3/", "/v3beta/")):
                return _NOT_FOUND
            if path in ("/v3", "/v3beta"):
                return 301, [("Location", path + "/")], b""
            return _NO_PAGE
        if method != "POST":
            return _NOT_ALLOWED
        # etcd's gateway passes the Authorization header on as the call's token.
        token = headers.get("authorization")
        if route.streaming:
            return await self._stream(route, body, token)
        try:
            req = codec.decode(body, route.request)
        except codec.DecodeError as e:
            return _error(GrpcError(StatusCode.INVALID_ARGUMENT, str(e)))
        raw = req.SerializeToString()
        if self._max_recv and len(raw) > self._max_recv:
            return _error(GrpcError(StatusCode.RESOURCE_EXHAUSTED,
                                    "grpc: received message larger than max (%d vs. %d)"
                                    % (len(raw), self._max_recv)))
        handler = self._methods.unary.get(route.method)
        if handler is None:
            return _error(GrpcError(StatusCode.UNIMPLEMENTED, f"unknown method {route.method}"))
        ctx = CallContext(route.method, metadata={"token": token} if token else {})
        try:
            resp = await handler(raw, ctx)
        except GrpcError as e:
            return _error(e)
        return 200, _OK_HEADERS, codec.encode(route.response.FromString(resp))

    async def _stream(self, route, body: bytes, token):
        # grpc-gateway decodes the first message before calling: a bad one is an
        # Unknown error (500); later bad ones end the request stream there.
        try:
            msgs = []
            for obj in codec.loads_stream(body):
                m = route.request()
                codec.fill(m, obj)
                msgs.append(m)
        except codec.DecodeError as e:
            if not msgs:
                return _error(GrpcError(StatusCode.UNKNOWN, str(e)))
        handler = self._methods.stream.get(route.method)
        if handler is None:
            return _error(GrpcError(StatusCode.UNIMPLEMENTED, f"unknown method {route.method}"))
        if not route.client_streaming and not msgs:
            msgs = [route.request()]   # a server-streaming call with an empty body
        status, chunks = await streams.open_stream(
            handler, route.method, [m.SerializeToString() for m in msgs], route.response, token)
        return status, _OK_HEADERS if status == 200 else [("Content-Type", _JSON)], chunks

    async def _vars(self) -> bytes:
        """expvar's page: cmdline, file_descriptor_limit, (Go's) memstats as the
        member's figures that map onto them, and raft.status from Maintenance.Status
        (vote and per-follower progress are not known there: lead, and {})."""
        pid = self._parent_pid or os.getpid()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            cmdline = list(sys.argv)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        parts = [f'"cmdline": {codec.dumps(cmdline).decode()}',
                 f'"file_descriptor_limit": {fds}',
                 f'"memstats": {codec.dumps({"Sys": ru.ru_maxrss * 1024}).decode()}']
        status = self._methods.unary.get("/etcdserverpb.Maintenance/Status")
        if status is not None:
            try:
                st = rpc_pb2.StatusResponse.FromString(
                    await status(b"", CallContext("/etcdserverpb.Maintenance/Status")))
                me, lead = f"{st.header.member_id:x}", f"{st.leader:x}"
                raft = {"id": me, "term": st.raftTerm, "vote": lead, "commit": st.raftIndex,
                        "lead": lead,
                        "raftState": "StateLeader" if st.leader == st.header.member_id
                        else "StateFollower",
                        "applied": st.raftAppliedIndex, "progress": {}, "leadtransferee": "0"}
                parts.append(f'"raft.status": {codec.dumps(raft).decode()}')
            except GrpcError:
                pass
        return ("{\n" + ",\n".join(parts) + "\n}\n").encode()


def _hostname(host: str) -> str:
    """Go's httputil.GetHostname: the Host without its port (as is if unsplittable)."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and (host[end + 1:] == "" or host[end + 1] == ":"):
            return host[1:end] if host[end + 1:].startswith(":") else host
        return host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _rebinding_error(host: str) -> bytes:
    """etcd's errCVE20185702 text, as http.Error writes it."""
    quoted = codec.dumps(host).decode()     # Go's %q, for the hostnames that arrive here
    return ("\netcd received your request, but the Host header was unrecognized.\n\n"
            "To fix this, choose one of the following options:\n"
            "- Enable TLS, then any HTTPS request will be allowed.\n"
            "- Add the hostname you want to use to the whitelist in settings.\n"
            f"  - e.g. etcd --host-whitelist {quoted}\n\n"
            "This requirement has been added to help prevent \"DNS Rebinding\" attacks "
            "(CVE-2018-5702).\n\n").encode()


def _error(e: GrpcError):
    return http_status(e.code), [("Content-Type", _JSON)], error_body(e)
