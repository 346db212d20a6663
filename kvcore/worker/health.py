"""grpc.health.v1.Health, answered by the worker itself.

etcd registers gRPC's standard health service beside its own, with one status, for
the empty service name: SERVING for as long as the member serves (etcd 3.5.1 sets no
other state). Kubernetes' gRPC probes, grpc_health_probe and clients with gRPC
health checking ask it. Any other service name is unknown: Check answers NOT_FOUND
"unknown service", Watch sends SERVICE_UNKNOWN and stays open, as grpc-go's
health server does.
"""
from __future__ import annotations

import asyncio

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from kvcore.api.methods import HEALTH_CHECK as CHECK, HEALTH_WATCH as WATCH
from google.protobuf.message import DecodeError

from kvcore.engine.base import UNMARSHAL_STREAM, GrpcError, MethodTable, StatusCode


def _messages():
    """HealthCheckRequest and HealthCheckResponse from grpc's health.proto."""
    f = descriptor_pb2.FileDescriptorProto(name="kvcore/grpc_health_v1.proto",
                                           package="grpc.health.v1", syntax="proto3")
    req = f.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    resp = f.message_type.add(name="HealthCheckResponse")
    status = resp.enum_type.add(name="ServingStatus")
    for i, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        status.value.add(name=name, number=i)
    resp.field.add(name="status", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
                   type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.health.v1.{n}"))
            for n in ("HealthCheckRequest", "HealthCheckResponse"))


HealthCheckRequest, HealthCheckResponse = _messages()
SERVING = HealthCheckResponse(status=1).SerializeToString()
SERVICE_UNKNOWN = HealthCheckResponse(status=3).SerializeToString()


async def check(request: bytes, ctx) -> bytes:
    if HealthCheckRequest.FromString(request).service:
        raise GrpcError(StatusCode.NOT_FOUND, "unknown service")
    return SERVING


async def watch(requests, send, ctx) -> None:
    async for request in requests:
        try:
            known = not HealthCheckRequest.FromString(request).service
        except DecodeError as e:
            raise GrpcError(StatusCode.INTERNAL, f"{UNMARSHAL_STREAM} {e}") from None
        await send(SERVING if known else SERVICE_UNKNOWN)
        break
    # The status never changes while the member serves: the stream stays open until
    # the client ends it or its deadline passes, as grpc-go's Watch does.
    await asyncio.get_running_loop().create_future()


def add_to(methods: MethodTable) -> MethodTable:
    methods.unary[CHECK] = check
    methods.stream[WATCH] = watch
    return methods
