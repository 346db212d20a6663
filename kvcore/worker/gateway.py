"""HTTP on the client port: /version, /health, and etcd's JSON gateway under /v3/.

The gateway maps etcd's grpc-gateway routes to gRPC methods; bodies are JSON with
proto field names, int64 as strings and bytes as base64, as etcd's gateway does.
"""
from __future__ import annotations

import json
from typing import Awaitable, Callable, Optional

from google.protobuf import json_format

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2
from kvcore.api.methods import METHOD_ID, STREAMING
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.ipc.framing import caller_token

ROUTES = {
    "/v3/kv/range": "/etcdserverpb.KV/Range",
    "/v3/kv/put": "/etcdserverpb.KV/Put",
    "/v3/kv/deleterange": "/etcdserverpb.KV/DeleteRange",
    "/v3/kv/txn": "/etcdserverpb.KV/Txn",
    "/v3/kv/compaction": "/etcdserverpb.KV/Compact",
    "/v3/lease/grant": "/etcdserverpb.Lease/LeaseGrant",
    "/v3/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/kv/lease/revoke": "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/kv/lease/timetolive": "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/kv/lease/leases": "/etcdserverpb.Lease/LeaseLeases",
    "/v3/cluster/member/add": "/etcdserverpb.Cluster/MemberAdd",
    "/v3/cluster/member/remove": "/etcdserverpb.Cluster/MemberRemove",
    "/v3/cluster/member/update": "/etcdserverpb.Cluster/MemberUpdate",
    "/v3/cluster/member/list": "/etcdserverpb.Cluster/MemberList",
    "/v3/cluster/member/promote": "/etcdserverpb.Cluster/MemberPromote",
    "/v3/maintenance/alarm": "/etcdserverpb.Maintenance/Alarm",
    "/v3/maintenance/status": "/etcdserverpb.Maintenance/Status",
    "/v3/maintenance/defragment": "/etcdserverpb.Maintenance/Defragment",
    "/v3/maintenance/hash": "/etcdserverpb.Maintenance/Hash",
    "/v3/maintenance/hashkv": "/etcdserverpb.Maintenance/HashKV",
    "/v3/maintenance/transfer-leadership": "/etcdserverpb.Maintenance/MoveLeader",
    "/v3/maintenance/downgrade": "/etcdserverpb.Maintenance/Downgrade",
    "/v3/auth/enable": "/etcdserverpb.Auth/AuthEnable",
    "/v3/auth/disable": "/etcdserverpb.Auth/AuthDisable",
    "/v3/auth/status": "/etcdserverpb.Auth/AuthStatus",
    "/v3/auth/authenticate": "/etcdserverpb.Auth/Authenticate",
    "/v3/auth/user/add": "/etcdserverpb.Auth/UserAdd",
    "/v3/auth/user/get": "/etcdserverpb.Auth/UserGet",
    "/v3/auth/user/list": "/etcdserverpb.Auth/UserList",
    "/v3/auth/user/delete": "/etcdserverpb.Auth/UserDelete",
    "/v3/auth/user/changepw": "/etcdserverpb.Auth/UserChangePassword",
    "/v3/auth/user/grant": "/etcdserverpb.Auth/UserGrantRole",
    "/v3/auth/user/revoke": "/etcdserverpb.Auth/UserRevokeRole",
    "/v3/auth/role/add": "/etcdserverpb.Auth/RoleAdd",
    "/v3/auth/role/get": "/etcdserverpb.Auth/RoleGet",
    "/v3/auth/role/list": "/etcdserverpb.Auth/RoleList",
    "/v3/auth/role/delete": "/etcdserverpb.Auth/RoleDelete",
    "/v3/auth/role/grant": "/etcdserverpb.Auth/RoleGrantPermission",
    "/v3/auth/role/revoke": "/etcdserverpb.Auth/RoleRevokePermission",
    "/v3/lock/lock": "/v3lockpb.Lock/Lock",
    "/v3/lock/unlock": "/v3lockpb.Lock/Unlock",
    "/v3/election/campaign": "/v3electionpb.Election/Campaign",
    "/v3/election/proclaim": "/v3electionpb.Election/Proclaim",
    "/v3/election/leader": "/v3electionpb.Election/Leader",
    "/v3/election/resign": "/v3electionpb.Election/Resign",
}

# grpc-gateway's HTTP status for each gRPC code.
_HTTP_STATUS = {
    StatusCode.CANCELLED: 408, StatusCode.UNKNOWN: 500, StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504, StatusCode.NOT_FOUND: 404, StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403, StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 429, StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409, StatusCode.OUT_OF_RANGE: 400, StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500, StatusCode.UNAVAILABLE: 503, StatusCode.DATA_LOSS: 500,
}


def _message_types() -> dict[str, tuple]:
    out = {}
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for s in mod.DESCRIPTOR.services_by_name.values():
            for m in s.methods:
                out[f"/{s.full_name}/{m.name}"] = (m.input_type, m.output_type)
    return out


_TYPES = _message_types()
_JSON = [("Content-Type", "application/json")]


def _msg_class(desc):
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(desc)


class Gateway:
    """``call(method_id, request bytes) -> awaitable response bytes`` reaches the core."""

    def __init__(self, call: Callable[[int, bytes], Awaitable[bytes]], health: Callable,
                 metrics: Callable, call_token: Optional[Callable] = None):
        self._call = call
        self._call_token = call_token   # (method id, request, token): etcd's auth token
        self._health = health
        self._metrics = metrics

    async def __call__(self, method: str, path: str, headers, body: bytes):
        path = path.split("?", 1)[0]
        if path == "/version":
            return 200, _JSON, json.dumps({"etcdserver": ETCD_VERSION,
                                           "etcdcluster": ETCD_VERSION[:-1] + "0"}).encode()
        if path in ("/health", "/livez", "/readyz"):
            try:
                await self._health()
                return 200, _JSON, b'{"health":"true","reason":""}'
            except GrpcError as e:
                return 503, _JSON, json.dumps({"health": "false", "reason": e.message}).encode()
        if path == "/metrics":
            return 200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], \
                await self._metrics()
        target = ROUTES.get(path)
        if target is None or target in STREAMING:
            return 404, [("Content-Type", "text/plain")], b"404 page not found\n"
        if method != "POST":
            return 405, [("Content-Type", "text/plain")], b"Method Not Allowed\n"
        in_desc, out_desc = _TYPES[target]
        req = _msg_class(in_desc)()
        try:
            if body.strip():
                json_format.Parse(body, req, ignore_unknown_fields=False)
        except (json_format.ParseError, UnicodeDecodeError, ValueError, TypeError,
                RecursionError) as e:   # any body that is not the request: etcd's 400
            return 400, _JSON, json.dumps({"error": str(e), "code": 3, "message": str(e)}).encode()
        try:
            # etcd's gateway takes the auth token from the Authorization header.
            token = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
            if token and self._call_token is not None:
                token = caller_token(token)
                raw = await self._call_token(METHOD_ID[target], req.SerializeToString(), token)
            else:
                raw = await self._call(METHOD_ID[target], req.SerializeToString())
        except GrpcError as e:
            return (_HTTP_STATUS.get(e.code, 500), _JSON,
                    json.dumps({"error": e.message, "code": int(e.code), "message": e.message}).encode())
        resp = _msg_class(out_desc).FromString(raw)
        return 200, _JSON, json_format.MessageToJson(
            resp, preserving_proto_field_name=True, indent=None).encode()
