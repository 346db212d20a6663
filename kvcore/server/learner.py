"""What a learner serves, as etcd 3.5's gRPC interceptors decide it
(server/etcdserver/api/v3rpc/interceptor.go): of the unary calls only Status and a
serializable Range; of the streams only Snapshot. Everything else is refused with
``etcdserver: rpc not supported for learner`` (Unavailable), so clients move on to
a voting member.
"""
from __future__ import annotations

from typing import Optional

from kvcore.api import rpc_pb2
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.api.methods import METHOD_ID
from kvcore.engine.base import GrpcError

_STATUS = METHOD_ID["/etcdserverpb.Maintenance/Status"]
_RANGE = METHOD_ID["/etcdserverpb.KV/Range"]
_SNAPSHOT = METHOD_ID["/etcdserverpb.Maintenance/Snapshot"]


def is_learner(core) -> bool:
    me = core.membership.members.get(core.member_id)
    return me is not None and me.is_learner


def unary_refusal(core, method: int, payload: bytes) -> Optional[GrpcError]:
    """The error for a unary call this member must not serve, or None."""
    if method == _STATUS or not is_learner(core):
        return None
    if method == _RANGE and rpc_pb2.RangeRequest.FromString(payload).serializable:
        return None
    return etcd_error(EtcdError.NOT_SUPPORTED_FOR_LEARNER)


def stream_refusal(core, method: int) -> Optional[GrpcError]:
    if method == _SNAPSHOT or not is_learner(core):
        return None
    return etcd_error(EtcdError.NOT_SUPPORTED_FOR_LEARNER)


def read_index_refusal(core) -> Optional[GrpcError]:
    """A worker's linearizable read (it asks the core for a read index)."""
    return etcd_error(EtcdError.NOT_SUPPORTED_FOR_LEARNER) if is_learner(core) else None
