"""A stable numbering of every gRPC method path, shared by workers and the core.

The IPC between a worker and the core names a method by this small integer
instead of its path. Both sides derive the table from the same descriptors.
"""
from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2

# gRPC's standard health service, which etcd registers beside its own; the worker
# answers it (kvcore/worker/health.py), so its ids never cross the IPC.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


def _paths() -> list[str]:
    out = [HEALTH_CHECK, HEALTH_WATCH]
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for service in mod.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(f"/{service.full_name}/{m.name}")
    return sorted(out)


PATHS: list[str] = _paths()
METHOD_ID: dict[str, int] = {p: i for i, p in enumerate(PATHS)}
STREAMING: frozenset[str] = frozenset([HEALTH_WATCH, *(
    f"/{s.full_name}/{m.name}"
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2)
    for s in mod.DESCRIPTOR.services_by_name.values()
    for m in s.methods
    if m.client_streaming or m.server_streaming)])
