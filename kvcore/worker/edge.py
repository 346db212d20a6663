"""The edge of a member: every client call is checked here, in the worker that
decoded it, before it goes to the core (etcd's v3rpc checks, kvcore/api/rules.py).

The core trusts what arrives over the IPC to have passed these checks, so it does
not decode a request to check it again: a Put or DeleteRange reaches the log
without the core parsing it (the apply is its one decode). Auth permission checks
stay in the core (the tokens live there), but for a Range of the current revision,
which the worker checks itself (kvcore/worker/authview.py).
"""
from __future__ import annotations

from typing import Callable, Optional

from google.protobuf.message import DecodeError

from kvcore.api import rpc_pb2, rules
from kvcore.api.methods import METHOD_ID, PATHS
from kvcore.engine.base import GrpcError, MethodTable, StatusCode

KV = "/etcdserverpb.KV/"


def _range(req: bytes) -> None:
    rules.check_range(rpc_pb2.RangeRequest.FromString(req))


def _put(req: bytes) -> None:
    rules.check_put(rpc_pb2.PutRequest.FromString(req))


def _delete(req: bytes) -> None:
    rules.check_delete(rpc_pb2.DeleteRangeRequest.FromString(req))


def checks(max_txn_ops: int) -> list[Optional[Callable[[bytes], None]]]:
    """Method id -> the check its request bytes pass (None: no check at the edge)."""
    def txn(req: bytes) -> None:
        r = rpc_pb2.TxnRequest.FromString(req)
        rules.check_txn(r, max_txn_ops)

    table: list = [None] * len(PATHS)
    for name, fn in (("Range", _range), ("Put", _put), ("DeleteRange", _delete),
                     ("Txn", txn)):
        table[METHOD_ID[KV + name]] = fn
    return table


class Edge:
    """The calls of a worker's engine and gateway: checked, then sent to the core."""

    def __init__(self, client, max_txn_ops: int):
        self.client = client
        self._checks = checks(max_txn_ops)

    def call(self, method: int, payload: bytes):
        check = self._checks[method] if method < len(self._checks) else None
        if check is not None:
            check(payload)
        return self.client.call(method, payload)

    def call_token(self, method: int, payload: bytes, token: str):
        check = self._checks[method] if method < len(self._checks) else None
        if check is not None:
            check(payload)
        return self.client.call_token(method, payload, token)


def unmarshal_errors(methods: MethodTable) -> MethodTable:
    """Bytes that do not parse as the method's request get grpc-go's answer, INTERNAL
    "grpc: error unmarshalling request: ...", from whichever handler decodes them
    (the edge checks, the worker's local reads), instead of UNKNOWN."""
    def wrap(fn):
        async def handler(request: bytes, ctx) -> bytes:
            try:
                return await fn(request, ctx)
            except DecodeError as e:
                raise GrpcError(StatusCode.INTERNAL,
                                f"grpc: error unmarshalling request: {e}") from None
        return handler
    return MethodTable(unary={p: wrap(fn) for p, fn in methods.unary.items()},
                       stream=methods.stream)
