"""Pre-encoded request bodies for the unary benchmarks, like etcd's tools/benchmark.

Keys are built as etcd's benchmark builds them: a `key_size`-byte buffer holding the
signed varint of the key number (sequential: i % key_space_size; otherwise random in
[0, key_space_size)). Bodies are encoded once, before the clock starts; random-key
workloads draw from a pool of at most POOL_MAX pre-encoded bodies, cycled.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kvcore.h2client import framing as h2

POOL_MAX = 1 << 17

KV = "/etcdserverpb.KV/"


def _pb():
    from kvcore.api import rpc_pb2  # noqa: WPS433 (generated at build time)
    return rpc_pb2


def varint_key(n: int, size: int) -> bytes:
    """etcd benchmark's key: binary.PutVarint(k, n) into a zeroed buffer of `size` bytes."""
    z = (n << 1) ^ (n >> 63)  # zig-zag
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            break
    out = out[:size]
    return bytes(out) + b"\x00" * (size - len(out))


@dataclass
class Workload:
    name: str          # put, range, txn-put, ...
    path: str          # gRPC method path
    bodies: list       # gRPC-framed request messages, cycled
    detail: dict       # what the run did, for the report

    def for_process(self, index: int, nprocs: int) -> "Workload":
        return self


def key_numbers(count: int, key_space: int, sequential: bool, seed: int, offset: int = 0,
                stride: int = 1) -> list[int]:
    if sequential:
        return [(offset + i * stride) % key_space for i in range(count)]
    rnd = random.Random(seed)
    return [rnd.randrange(key_space) for _ in range(count)]


def put_workload(key_size=8, val_size=8, key_space_size=1, sequential_keys=False,
                 total=10000, seed=1, proc=0, nprocs=1) -> Workload:
    pb = _pb()
    value = b"\x00" * 0 + bytes(random.Random(seed ^ 0x5EED).getrandbits(8) for _ in range(val_size))
    per_proc = -(-total // nprocs)
    count = min(per_proc, key_space_size if sequential_keys and key_space_size <= POOL_MAX else POOL_MAX,
                POOL_MAX)
    nums = key_numbers(max(1, count), key_space_size, sequential_keys, seed + proc, proc, nprocs)
    bodies = [h2.grpc_message(pb.PutRequest(key=varint_key(n, key_size), value=value)
                              .SerializeToString()) for n in nums]
    return Workload("put", KV + "Put", bodies, {
        "key_size": key_size, "val_size": val_size, "key_space_size": key_space_size,
        "sequential_keys": sequential_keys, "distinct_bodies": len(bodies)})


def range_workload(key: str, end: str | None = None, consistency: str = "l", limit: int = 0,
                   count_only: bool = False) -> Workload:
    pb = _pb()
    req = pb.RangeRequest(key=key.encode(), serializable=(consistency == "s"), limit=limit,
                          count_only=count_only)
    if end:
        req.range_end = end.encode()
    return Workload("range", KV + "Range", [h2.grpc_message(req.SerializeToString())], {
        "key": key, "end": end, "consistency": consistency, "limit": limit})


def txn_put_workload(key_size=8, val_size=8, key_space_size=1, txn_ops=1, total=10000,
                     seed=1, proc=0, nprocs=1) -> Workload:
    if txn_ops > key_space_size:
        raise ValueError(f"--txn-ops ({txn_ops}) must be ≤ --key-space-size ({key_space_size}): "
                         f"etcd rejects a txn that puts one key twice")
    pb = _pb()
    value = bytes(random.Random(seed ^ 0x5EED).getrandbits(8) for _ in range(val_size))
    rnd = random.Random(seed + proc)
    per_proc = -(-total // nprocs)
    bodies = []
    for _ in range(max(1, min(per_proc, POOL_MAX // max(1, txn_ops)))):
        # etcd rejects a txn that puts one key twice: distinct keys within a txn
        nums = rnd.sample(range(key_space_size), txn_ops)
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=varint_key(n, key_size), value=value))
               for n in nums]
        bodies.append(h2.grpc_message(pb.TxnRequest(success=ops).SerializeToString()))
    return Workload("txn-put", KV + "Txn", bodies, {
        "key_size": key_size, "val_size": val_size, "key_space_size": key_space_size,
        "txn_ops": txn_ops, "distinct_bodies": len(bodies)})
