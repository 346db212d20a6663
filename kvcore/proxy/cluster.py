"""Cluster.MemberList as etcd's grpcproxy/cluster.go answers it: with an advertised
client URL the proxy lists itself (named by the host name, no ID, no header);
without one the cluster's own list is forwarded."""
from __future__ import annotations

import socket

from kvcore.api import rpc_pb2

MEMBER_LIST = "/etcdserverpb.Cluster/MemberList"
MEMBER_PROMOTE = "/etcdserverpb.Cluster/MemberPromote"


def member_list_handler(advertise_client_url: str, forward):
    if not advertise_client_url:
        return forward

    async def member_list(request: bytes, ctx) -> bytes:
        resp = rpc_pb2.MemberListResponse()
        resp.members.add(name=socket.gethostname(), clientURLs=[advertise_client_url])
        return resp.SerializeToString()
    return member_list
