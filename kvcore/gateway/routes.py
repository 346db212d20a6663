"""The google.api.http routes of etcd 3.5's protos: every one is POST with the
whole body as the request message. /v3beta/ is the same table (etcd 3.4, and
3.5 still serves it). HashKV has no route: etcd's proto gives it Hash's path,
and Hash wins."""
from __future__ import annotations

from google.protobuf import message_factory

from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2

_KV, _LEASE = "/etcdserverpb.KV/", "/etcdserverpb.Lease/"
_CLUSTER, _MAINT = "/etcdserverpb.Cluster/", "/etcdserverpb.Maintenance/"
_AUTH = "/etcdserverpb.Auth/"
_LOCK, _ELECTION = "/v3lockpb.Lock/", "/v3electionpb.Election/"

ROUTES: dict[str, str] = {
    "/v3/kv/range": _KV + "Range",
    "/v3/kv/put": _KV + "Put",
    "/v3/kv/deleterange": _KV + "DeleteRange",
    "/v3/kv/txn": _KV + "Txn",
    "/v3/kv/compaction": _KV + "Compact",
    "/v3/watch": "/etcdserverpb.Watch/Watch",
    "/v3/lease/grant": _LEASE + "LeaseGrant",
    "/v3/lease/revoke": _LEASE + "LeaseRevoke",
    "/v3/kv/lease/revoke": _LEASE + "LeaseRevoke",
    "/v3/lease/keepalive": _LEASE + "LeaseKeepAlive",
    "/v3/lease/timetolive": _LEASE + "LeaseTimeToLive",
    "/v3/kv/lease/timetolive": _LEASE + "LeaseTimeToLive",
    "/v3/lease/leases": _LEASE + "LeaseLeases",
    "/v3/kv/lease/leases": _LEASE + "LeaseLeases",
    "/v3/cluster/member/add": _CLUSTER + "MemberAdd",
    "/v3/cluster/member/remove": _CLUSTER + "MemberRemove",
    "/v3/cluster/member/update": _CLUSTER + "MemberUpdate",
    "/v3/cluster/member/list": _CLUSTER + "MemberList",
    "/v3/cluster/member/promote": _CLUSTER + "MemberPromote",
    "/v3/maintenance/alarm": _MAINT + "Alarm",
    "/v3/maintenance/status": _MAINT + "Status",
    "/v3/maintenance/defragment": _MAINT + "Defragment",
    "/v3/maintenance/hash": _MAINT + "Hash",
    "/v3/maintenance/snapshot": _MAINT + "Snapshot",
    "/v3/maintenance/transfer-leadership": _MAINT + "MoveLeader",
    "/v3/maintenance/downgrade": _MAINT + "Downgrade",
    "/v3/auth/enable": _AUTH + "AuthEnable",
    "/v3/auth/disable": _AUTH + "AuthDisable",
    "/v3/auth/status": _AUTH + "AuthStatus",
    "/v3/auth/authenticate": _AUTH + "Authenticate",
    "/v3/auth/user/add": _AUTH + "UserAdd",
    "/v3/auth/user/get": _AUTH + "UserGet",
    "/v3/auth/user/list": _AUTH + "UserList",
    "/v3/auth/user/delete": _AUTH + "UserDelete",
    "/v3/auth/user/changepw": _AUTH + "UserChangePassword",
    "/v3/auth/user/grant": _AUTH + "UserGrantRole",
    "/v3/auth/user/revoke": _AUTH + "UserRevokeRole",
    "/v3/auth/role/add": _AUTH + "RoleAdd",
    "/v3/auth/role/get": _AUTH + "RoleGet",
    "/v3/auth/role/list": _AUTH + "RoleList",
    "/v3/auth/role/delete": _AUTH + "RoleDelete",
    "/v3/auth/role/grant": _AUTH + "RoleGrantPermission",
    "/v3/auth/role/revoke": _AUTH + "RoleRevokePermission",
    "/v3/lock/lock": _LOCK + "Lock",
    "/v3/lock/unlock": _LOCK + "Unlock",
    "/v3/election/campaign": _ELECTION + "Campaign",
    "/v3/election/proclaim": _ELECTION + "Proclaim",
    "/v3/election/leader": _ELECTION + "Leader",
    "/v3/election/observe": _ELECTION + "Observe",
    "/v3/election/resign": _ELECTION + "Resign",
}


class Route:
    """One gateway route: its gRPC method, message classes and whether it streams."""

    __slots__ = ("method", "request", "response", "streaming", "client_streaming")

    def __init__(self, method: str, m):
        self.method = method
        self.request = message_factory.GetMessageClass(m.input_type)
        self.response = message_factory.GetMessageClass(m.output_type)
        self.streaming = m.client_streaming or m.server_streaming
        self.client_streaming = m.client_streaming


def _table() -> dict[str, Route]:
    methods = {}
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for s in mod.DESCRIPTOR.services_by_name.values():
            for m in s.methods:
                methods[f"/{s.full_name}/{m.name}"] = m
    out = {}
    for path, target in ROUTES.items():
        route = Route(target, methods[target])
        out[path] = route
        out["/v3beta/" + path[len("/v3/"):]] = route
    return out


TABLE: dict[str, Route] = _table()
