"""Errors as etcd 3.5's grpc-gateway (v1.16) writes them."""
from __future__ import annotations

from kvcore.engine.base import GrpcError, StatusCode
from kvcore.gateway import codec

# runtime.HTTPStatusFromCode.
_HTTP_STATUS = {
    StatusCode.OK: 200, StatusCode.CANCELLED: 408, StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400, StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404, StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403, StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 429, StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409, StatusCode.OUT_OF_RANGE: 400, StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500, StatusCode.UNAVAILABLE: 503, StatusCode.DATA_LOSS: 500,
}


def http_status(code: StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


def error_body(e: GrpcError) -> bytes:
    """runtime.DefaultHTTPError's body: {"error","code","message"}."""
    return codec.dumps({"error": e.message, "code": int(e.code), "message": e.message})
