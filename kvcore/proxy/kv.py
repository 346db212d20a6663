"""KV through the proxy with etcd's proxy/grpcproxy/kv.go cache rules: serializable
ranges answered from the cache, every range's response cached, writes through the
proxy invalidating what they overlap. Requests still cross as their raw bytes."""
from __future__ import annotations

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error

from .cache import RangeCache

P = "/etcdserverpb.KV/"


def install(table, up, metrics) -> None:
    cache = RangeCache()

    async def range_(request: bytes, ctx) -> bytes:
        req = rpc_pb2.RangeRequest.FromString(request)
        if req.serializable:
            try:
                hit = cache.get(req)
            except LookupError:
                metrics.cache_hits.inc()
                raise etcd_error(EtcdError.COMPACTED) from None
            if hit is not None:
                metrics.cache_hits.inc()
                return hit
            metrics.cache_misses.inc()
        resp = await up.unary(P + "Range", request, ctx)
        cache.add(req, resp)
        metrics.cache_keys.set(len(cache))
        return resp

    async def put(request: bytes, ctx) -> bytes:
        cache.invalidate(rpc_pb2.PutRequest.FromString(request).key)
        return await up.unary(P + "Put", request, ctx)

    async def delete_range(request: bytes, ctx) -> bytes:
        req = rpc_pb2.DeleteRangeRequest.FromString(request)
        cache.invalidate(req.key, req.range_end)
        return await up.unary(P + "DeleteRange", request, ctx)

    async def txn(request: bytes, ctx) -> bytes:
        resp = await up.unary(P + "Txn", request, ctx)
        cache.after_txn(rpc_pb2.TxnRequest.FromString(request),
                        rpc_pb2.TxnResponse.FromString(resp))
        return resp

    async def compact(request: bytes, ctx) -> bytes:
        resp = await up.unary(P + "Compact", request, ctx)
        cache.compact(rpc_pb2.CompactionRequest.FromString(request).revision)
        return resp

    table.unary.update({P + "Range": range_, P + "Put": put, P + "DeleteRange": delete_range,
                        P + "Txn": txn, P + "Compact": compact})
