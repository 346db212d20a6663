"""The JSON gateway's side of the differential fuzzer: the same requests as
tests/fuzz/gen.py draws, sent as grpc-gateway JSON (POST /v3/...) to kvcore and to
etcd 3.5.1, answers compared as (HTTP status, JSON body) after the member-specific
header fields are dropped. How a request is spelled (proto field names or their
lowerCamelCase JSON names, enums by name or number) is drawn too: grpc-gateway's
unmarshaler takes each, and clients use each.
"""
from __future__ import annotations

import http.client
import json

from google.protobuf import json_format

from kvcore.api import rpc_pb2
from tests.fuzz import gen

TIMEOUT = 15
PATHS = {"Range": "/v3/kv/range", "Put": "/v3/kv/put", "DeleteRange": "/v3/kv/deleterange",
         "Txn": "/v3/kv/txn", "Compact": "/v3/kv/compaction",
         "LeaseGrant": "/v3/lease/grant", "LeaseRevoke": "/v3/lease/revoke",
         "LeaseTimeToLive": "/v3/lease/timetolive", "LeaseLeases": "/v3/lease/leases",
         "UserGet": "/v3/auth/user/get", "UserList": "/v3/auth/user/list",
         "RoleGet": "/v3/auth/role/get", "RoleList": "/v3/auth/role/list"}
MEMBER_FIELDS = ("cluster_id", "member_id", "raft_term")


class Side:
    """One server's gateway, over one kept-alive HTTP/1.1 connection."""

    def __init__(self, endpoint: str):
        host, port = endpoint.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def post(self, path: str, body: str):
        for attempt in (0, 1):      # a kept-alive connection closed by the server: redial
            try:
                self.conn.request("POST", path, body=body,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
                if attempt:
                    raise

    def close(self):
        self.conn.close()


def encode(req, spelling: tuple) -> str:
    camel, enum_ints = spelling
    return json_format.MessageToJson(req, preserving_proto_field_name=not camel,
                                     use_integers_for_enums=enum_ints, indent=None)


def _strip(v, explicit_leases):
    """Drop member-specific header fields; a lease ID the server picked becomes -1."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k in MEMBER_FIELDS:
                continue
            if k == "lease" and isinstance(x, str) and int(x) not in explicit_leases:
                x = "-1"
            out[k] = _strip(x, explicit_leases)
        return out
    if isinstance(v, list):
        return [_strip(x, explicit_leases) for x in v]
    return v


def answer(status: int, raw: bytes, method: str):
    try:
        body = json.loads(raw)
    except ValueError:
        return (status, "not JSON", raw[:300])
    body = _strip(body, gen.EXPLICIT_LEASES)
    if method == "LeaseTimeToLive" and status == 200:
        ttl = int(body.get("TTL", "0"))
        body["TTL"] = -1 if ttl < 0 else 1
        if "keys" in body:
            body["keys"] = sorted(body["keys"])
    if method == "LeaseLeases" and status == 200:    # IDs the servers picked: counted
        ids = [int(x.get("ID", "0")) for x in body.get("leases", [])]
        body["leases"] = sorted(i if i in gen.EXPLICIT_LEASES else -1 for i in ids)
    return (status, body)


def call(side: Side, method: str, req, spelling=(False, False)):
    status, raw = side.post(PATHS[method], encode(req, spelling))
    return answer(status, raw, method), raw


def lease_cycle(side: Side, cyc: gen.LeaseCycle, spelling) -> list:
    """As tests/fuzz/diff.lease_cycle, through the gateway."""
    out = []
    ans, raw = call(side, "LeaseGrant", rpc_pb2.LeaseGrantRequest(ID=cyc.ID, TTL=cyc.TTL),
                    spelling)
    if ans[0] != 200:
        return [ans]
    body = json.loads(raw)
    lid = int(body.get("ID", "0"))
    body["ID"] = str(cyc.ID)
    out.append(answer(200, json.dumps(body).encode(), "LeaseGrant"))
    for k in cyc.keys:
        out.append(call(side, "Put", rpc_pb2.PutRequest(key=k, value=b"l", lease=lid),
                        spelling)[0])
    ans, raw = call(side, "LeaseTimeToLive",
                    rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True), spelling)
    if ans[0] == 200:
        body = json.loads(raw)
        body["ID"] = str(cyc.ID)
        ans = answer(200, json.dumps(body).encode(), "LeaseTimeToLive")
    out.append(ans)
    out.append(call(side, "LeaseRevoke", rpc_pb2.LeaseRevokeRequest(ID=lid), spelling)[0])
    return out
