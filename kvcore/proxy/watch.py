"""Watch coalescing, as etcd's proxy/grpcproxy watch broadcasts: watchers of the same
range with the same options, from any client stream, share one upstream watch.

The proxy keeps one upstream Watch stream for every coalesced watch. A watcher that
starts "now" (start_revision 0) joins the group for its (key, range_end, filters,
prev_kv, progress_notify, fragment) and gets the group's events re-tagged with its own
watch ID; a watcher with a start revision gets a group of its own (it needs history
the others have passed). When the upstream stream breaks (the endpoint died), every
group is re-created from the revision after its last event, so no event is lost or
repeated. Calls carrying an auth token are forwarded whole instead: a coalesced watch
would check only the first watcher's permissions.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging

import grpc

from kvcore.api import rpc_pb2
from kvcore.engine.base import GrpcError, StatusCode

WATCH = "/etcdserverpb.Watch/Watch"
log = logging.getLogger("kvcore.proxy.watch")


class Group:
    """One upstream watch and the client watchers sharing it."""

    def __init__(self, key, create: rpc_pb2.WatchCreateRequest):
        self.key = key
        self.create = create
        self.next_rev = create.start_revision
        self.members: dict = {}          # (Client, watch id) -> Client
        self.created = False
        self.header = rpc_pb2.ResponseHeader()

    def add(self, client, wid: int) -> None:
        self.members[(client, wid)] = client
        if self.created:                 # the upstream create came earlier: emulate it
            client.put(rpc_pb2.WatchResponse(header=self.header, watch_id=wid, created=True))

    def fan_out(self, resp: rpc_pb2.WatchResponse) -> None:
        for (client, wid) in list(self.members):
            resp.watch_id = wid
            client.put(resp)


class Client:
    """One client Watch stream: its outgoing queue (a slow reader delays only itself)."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.ids = itertools.count()

    def put(self, resp: rpc_pb2.WatchResponse) -> None:
        self.queue.put_nowait(resp.SerializeToString())


class Coalescer:
    def __init__(self, upstream, metrics=None):
        self.up = upstream
        self.metrics = metrics
        self.groups: dict = {}           # coalescing key -> Group (shareable groups)
        self.live: set = set()           # every group with members
        self.by_id: dict = {}            # upstream watch id -> Group
        self.pending: collections.deque = collections.deque()
        self.out: asyncio.Queue = asyncio.Queue()
        self.task = None
        self.upstream_watches = 0

    # ---- client side ----

    async def serve(self, requests, send, ctx) -> None:
        if ctx.metadata.get("token"):
            return await self.up.bidi(WATCH, requests, send, ctx)
        client = Client()
        mine: dict = {}                  # watch id -> Group

        async def writer():
            while True:
                await send(await client.queue.get())
        wtask = asyncio.ensure_future(writer())
        try:
            async for raw in requests:
                req = rpc_pb2.WatchRequest.FromString(raw)
                kind = req.WhichOneof("request_union")
                if kind == "create_request":
                    cr = req.create_request
                    wid = cr.watch_id if cr.watch_id else next(client.ids)
                    mine[wid] = self._join(client, wid, cr)
                elif kind == "cancel_request":
                    wid = req.cancel_request.watch_id
                    g = mine.pop(wid, None)
                    if g is not None:
                        self._leave(g, client, wid)
                        client.put(rpc_pb2.WatchResponse(header=g.header, watch_id=wid,
                                                          canceled=True))
                elif kind == "progress_request":
                    hdr = next(iter(mine.values())).header if mine else rpc_pb2.ResponseHeader()
                    client.put(rpc_pb2.WatchResponse(header=hdr, watch_id=-1))
            # etcd's proxy (unlike its server) ends the call when the client
            # half-closes: its recvLoop cancels the stream's context.
            raise GrpcError(StatusCode.UNKNOWN, "context canceled")
        finally:
            for wid, g in mine.items():
                self._leave(g, client, wid)
            wtask.cancel()

    def _join(self, client, wid, cr) -> Group:
        key = (cr.key, cr.range_end, tuple(cr.filters), cr.prev_kv, cr.progress_notify,
               cr.fragment)
        g = self.groups.get(key) if cr.start_revision == 0 else None
        if g is None:
            g = Group(key, rpc_pb2.WatchCreateRequest.FromString(cr.SerializeToString()))
            g.create.watch_id = 0
            if cr.start_revision == 0:
                self.groups[key] = g
            self.live.add(g)
            self._create(g)
        g.add(client, wid)
        self._gauge()
        return g

    def _leave(self, g: Group, client, wid) -> None:
        g.members.pop((client, wid), None)
        if not g.members and g in self.live:
            self.live.discard(g)
            if self.groups.get(g.key) is g:
                del self.groups[g.key]
            for uid, other in list(self.by_id.items()):
                if other is g:
                    del self.by_id[uid]
                    self.upstream_watches -= 1
                    self.out.put_nowait(rpc_pb2.WatchRequest(
                        cancel_request=rpc_pb2.WatchCancelRequest(watch_id=uid))
                        .SerializeToString())
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            n = sum(len(g.members) for g in self.live)
            self.metrics.watchers_coalescing.set(n - len(self.live))

    # ---- upstream side ----

    def _create(self, g: Group) -> None:
        cr = rpc_pb2.WatchCreateRequest.FromString(g.create.SerializeToString())
        cr.start_revision = g.next_rev
        self.pending.append(g)
        self.out.put_nowait(rpc_pb2.WatchRequest(create_request=cr).SerializeToString())
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        ns = self.up.ns                  # --namespace: keys prefixed up, stripped down
        while self.live:
            async def requests(q=self.out):
                while True:
                    raw = await q.get()
                    yield raw if ns is None else ns.request(WATCH, raw)
            call = self.up.channel.stream_stream(WATCH)(requests(), wait_for_ready=True)
            try:
                async for raw in call:
                    if ns is not None:
                        raw = ns.response(WATCH, raw)
                    self._dispatch(rpc_pb2.WatchResponse.FromString(raw))
            except grpc.aio.AioRpcError as e:
                log.warning("upstream watch stream broke; re-creating watches",
                            extra={"fields": {"error": e.details()}})
            finally:
                call.cancel()
            await asyncio.sleep(0.2)
            # A new stream: every live group is created again after its last event.
            self.out = asyncio.Queue()
            self.pending.clear()
            self.by_id.clear()
            self.upstream_watches = 0
            for g in list(self.live):
                self._create(g)

    def _dispatch(self, resp: rpc_pb2.WatchResponse) -> None:
        if resp.created:
            g = self.pending.popleft()
            if g not in self.live:       # everyone left before it was created
                self.out.put_nowait(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(
                    watch_id=resp.watch_id)).SerializeToString())
                return
            self.by_id[resp.watch_id] = g
            self.upstream_watches += 1
            g.header.CopyFrom(resp.header)
            if g.next_rev == 0:
                g.next_rev = resp.header.revision + 1
            if not g.created:
                g.created = True
                g.fan_out(resp)
            return
        g = self.by_id.get(resp.watch_id)
        if g is None:
            return
        g.header.CopyFrom(resp.header)
        if resp.events:
            g.next_rev = resp.events[-1].kv.mod_revision + 1
            if self.metrics is not None:
                self.metrics.events_coalescing.inc(len(resp.events) * max(0, len(g.members) - 1))
        g.fan_out(resp)
        if resp.canceled:
            del self.by_id[resp.watch_id]
            self.upstream_watches -= 1
            self.live.discard(g)
            if self.groups.get(g.key) is g:
                del self.groups[g.key]
