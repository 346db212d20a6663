"""The proxy's side towards the cluster: a lean HTTP/2 client for unary calls
(kvcore.h2client) and one grpc.aio channel over every endpoint for the rest.

Requests and responses cross the proxy as raw bytes (no serializer on either side):
the proxy decodes only what it answers itself. The channel's target lists every
endpoint's address with gRPC's pick_first policy, so when the endpoint in use dies
the channel moves to the next one that answers, and calls made with wait_for_ready
wait for that instead of failing (etcd's proxy gets the same from clientv3's
balancer).

Unary calls go through kvcore.h2client (cleartext or TLS alike): grpc.aio's
client call costs the proxy most of a put's CPU (docs/decisions.md). A call it could
not send (no endpoint reachable, stream refused, GOAWAY) goes through the channel,
which waits for an endpoint; a call whose connection dropped after it was sent is
answered Unavailable, as grpc.aio would, and never sent twice.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from typing import Optional

import grpc

from kvcore.engine.base import CallContext, GrpcError, RequestStream, SendFn, StatusCode
from kvcore.h2client import CallError, NotSent, UnaryClient

from .flags import ProxyConfig, host_port
from .namespace import Namespace

# Request headers that belong to the hop, not to the call.
_HOP_HEADERS = {"content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding",
                "grpc-accept-encoding", "authority", "host", "accept-encoding"}


def target(endpoints: list) -> tuple:
    """gRPC target naming every endpoint (ipv4:/ipv6: lists need addresses) and the
    authority TLS checks the server name against. A host name that does not resolve
    now is left out; when none does, the first is handed to gRPC's DNS resolver,
    which keeps trying (etcd's proxy, too, starts and waits for its endpoints)."""
    addrs, unresolved, authority = [], [], None
    for ep in endpoints:
        host, port = host_port(ep)
        authority = authority or f"{host}:{port}"
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            try:
                ip = ipaddress.ip_address(socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)[0][4][0])
            except OSError:
                unresolved.append(f"{host}:{port}")
                continue
        addrs.append((ip.version, f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"))
    v4 = [a for v, a in addrs if v == 4]
    v6 = [a for v, a in addrs if v == 6]
    if not addrs:
        return f"dns:///{unresolved[0]}", authority
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6)), authority


def _tls(cfg: ProxyConfig) -> bool:
    return bool(cfg.cacert or cfg.cert or any(e.startswith("https://") for e in cfg.endpoints))


def _credentials(cfg: ProxyConfig) -> Optional[grpc.ChannelCredentials]:
    if not _tls(cfg):
        return None

    def read(p):
        if not p:
            return None
        with open(p, "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(read(cfg.cacert), read(cfg.key), read(cfg.cert))


def metadata(ctx: CallContext) -> tuple:
    return tuple((k, v) for k, v in ctx.metadata.items()
                 if not k.startswith(":") and not k.startswith("grpc-")
                 and k not in _HOP_HEADERS)


def _timeout(ctx: CallContext) -> Optional[float]:
    if ctx.deadline is None:
        return None
    # A little before the engine's own deadline, so the call ends with the proxy's
    # answer (as a Go proxy's handler does) rather than the engine's.
    return max(0.0, ctx.deadline - asyncio.get_running_loop().time() - 0.05)


def _status_error(code: int, details: str) -> GrpcError:
    if code == StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
        # The call's own deadline passed here: Go's proxy returns ctx.Err(), which
        # gRPC sends as Unknown.
        return GrpcError(StatusCode.UNKNOWN, "context deadline exceeded")
    try:
        return GrpcError(StatusCode(code), details)
    except ValueError:
        return GrpcError(StatusCode.UNKNOWN, details)


def _error(e: grpc.aio.AioRpcError) -> GrpcError:
    return _status_error(e.code().value[0], e.details() or "")


def _ssl_context(cfg: ProxyConfig) -> Optional[ssl.SSLContext]:
    """TLS towards the cluster as grpc's credentials (_credentials) do it: the CA
    (else the system's), a client certificate if given, HTTP/2 by ALPN."""
    if not _tls(cfg):
        return None
    ctx = ssl.create_default_context(cafile=cfg.cacert or None)
    if cfg.cert:
        ctx.load_cert_chain(cfg.cert, cfg.key or None)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _lean_client(cfg: ProxyConfig, authority: str) -> UnaryClient:
    return UnaryClient([host_port(ep) for ep in cfg.endpoints], authority,
                       cfg.max_send_bytes, cfg.max_recv_bytes, _ssl_context(cfg))


class Upstream:
    """Forwarders to the cluster, one gRPC multicallable per method path."""

    def __init__(self, cfg: ProxyConfig):
        tgt, authority = target(cfg.endpoints)
        opts = [("grpc.max_send_message_length", cfg.max_send_bytes),
                ("grpc.max_receive_message_length", cfg.max_recv_bytes),
                ("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 3000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
                ("grpc.default_authority", authority)]
        creds = _credentials(cfg)
        if creds is None:
            self.channel = grpc.aio.insecure_channel(tgt, options=opts)
        else:
            if cfg.insecure_skip_tls_verify:
                raise ValueError("--insecure-skip-tls-verify is not supported by kvcore "
                                 "grpc-proxy (give --cacert)")
            self.channel = grpc.aio.secure_channel(tgt, creds, options=opts)
        self._calls: dict = {}
        self.lean = _lean_client(cfg, authority)
        # --namespace: requests prefixed on the way up, responses stripped on the way back.
        self.ns = Namespace(cfg.namespace) if cfg.namespace else None

    async def close(self) -> None:
        self.lean.close()
        await self.channel.close()

    def _mc(self, kind: str, path: str):
        key = (kind, path)
        mc = self._calls.get(key)
        if mc is None:
            mc = self._calls[key] = getattr(self.channel, kind)(path)
        return mc

    async def unary(self, path: str, request: bytes, ctx: CallContext) -> bytes:
        ns = self.ns
        if ns is not None and path in ns.paths:
            request = ns.request(path, request)
        try:
            resp = await self.lean.call(path, request, metadata(ctx), _timeout(ctx))
            return resp if ns is None else ns.response(path, resp)
        except CallError as e:
            raise _status_error(e.status, e.message) from None
        except NotSent:
            pass                 # through the channel, which waits for an endpoint
        try:
            resp = await self._mc("unary_unary", path)(
                request, metadata=metadata(ctx), timeout=_timeout(ctx), wait_for_ready=True)
        except grpc.aio.AioRpcError as e:
            raise _error(e) from None
        return resp if ns is None else ns.response(path, resp)

    async def server_stream(self, path: str, requests: RequestStream, send: SendFn,
                            ctx: CallContext) -> None:
        request = b""
        async for request in requests:
            break
        if self.ns is not None:
            request = self.ns.request(path, request)
        call = self._mc("unary_stream", path)(request, metadata=metadata(ctx),
                                              timeout=_timeout(ctx), wait_for_ready=True)
        await self._pump(call, send, path)

    async def bidi(self, path: str, requests: RequestStream, send: SendFn,
                   ctx: CallContext) -> None:
        ns = self.ns

        async def forward():
            async for r in requests:
                yield r if ns is None else ns.request(path, r)
        call = self._mc("stream_stream", path)(forward(), metadata=metadata(ctx),
                                               timeout=_timeout(ctx), wait_for_ready=True)
        await self._pump(call, send, path)

    async def _pump(self, call, send: SendFn, path: str) -> None:
        ns = self.ns
        try:
            async for resp in call:
                await send(resp if ns is None else ns.response(path, resp))
        except grpc.aio.AioRpcError as e:
            raise _error(e) from None
        finally:
            call.cancel()
