"""Cluster.MemberList as etcd's grpcproxy/cluster.go answers it:

* with an advertised client URL and a resolver prefix, the proxies registered under
  the prefix (register.py), each named by its metadata's host name; until one is
  seen, the proxy itself;
* with an advertised client URL only, the proxy itself (host name, no ID, no header);
* without one, the cluster's own list, forwarded.

The registered proxies are followed as etcd's endpoints manager does: a serializable
read of the prefix, then a watch from the next revision. A deleted (expired)
registration carries no address in etcd's update, so etcd's proxy never drops it
from the list; kvcore's does the same.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket

from kvcore import logs
from kvcore.api import rpc_pb2
from kvcore.engine.base import CallContext, GrpcError, StatusCode

MEMBER_LIST = "/etcdserverpb.Cluster/MemberList"
MEMBER_PROMOTE = "/etcdserverpb.Cluster/MemberPromote"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
log = logging.getLogger("kvcore.proxy.cluster")


def _prefix_end(key: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd."""
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xff:
            end[i] += 1
            return bytes(end[:i + 1])
    return b"\0"


class Registered:
    """Address -> metadata of the proxies registered under the prefix."""

    def __init__(self, up, prefix: str):
        self.up = up
        self.prefix = prefix.encode()
        self.members: dict = {}
        self.task = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _add(self, value: bytes) -> None:
        try:
            upd = json.loads(value)
            self.members[upd["Addr"]] = upd.get("Metadata")
        except (ValueError, KeyError, TypeError):
            log.warning("unmarshal endpoint update failed")

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except GrpcError as e:
                log.warning("failed to establish endpoint watch",
                            extra=logs.fields(prefix=self.prefix.decode(), error=e.message))
            except Exception as e:          # the upstream stream broke
                log.warning("watch failed", extra=logs.fields(error=str(e)))
            await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        end = _prefix_end(self.prefix)
        req = rpc_pb2.RangeRequest(key=self.prefix, range_end=end, serializable=True)
        ctx = CallContext(RANGE, deadline=asyncio.get_running_loop().time() + 5.0)
        resp = rpc_pb2.RangeResponse.FromString(
            await self.up.unary(RANGE, req.SerializeToString(), ctx))
        for kv in resp.kvs:
            self._add(kv.value)
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=self.prefix, range_end=end, start_revision=resp.header.revision + 1))

        async def requests():
            yield create.SerializeToString()
            await asyncio.Event().wait()        # no half-close: the watch stays open

        async def on_response(raw: bytes) -> None:
            for ev in rpc_pb2.WatchResponse.FromString(raw).events:
                if ev.type == 0:            # PUT; a DELETE names no address
                    self._add(ev.kv.value)
        await self.up.bidi(WATCH, requests(), on_response, CallContext(WATCH))

    def member_list(self) -> list:
        out = []
        for addr, meta in self.members.items():
            try:
                name = json.loads(meta)["name"]
            except (ValueError, KeyError, TypeError):
                raise GrpcError(StatusCode.UNKNOWN, "invalid metadata") from None
            out.append((name, addr))
        return out


def member_list_handler(advertise_client_url: str, registered, forward):
    if not advertise_client_url:
        return forward

    async def member_list(request: bytes, ctx) -> bytes:
        resp = rpc_pb2.MemberListResponse()
        listed = registered.member_list() if registered is not None else []
        for name, addr in listed or [(socket.gethostname(), advertise_client_url)]:
            resp.members.add(name=name, clientURLs=[addr])
        return resp.SerializeToString()
    return member_list
