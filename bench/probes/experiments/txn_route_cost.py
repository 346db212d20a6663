"""The core's own work to route a write Txn, in one process (no server, no noise from
the IPC or the disk): the handler's decode and classification plus the apply's decode.

    before: TxnRequest decoded, is_txn_readonly, txn_puts, decoded again at apply
    after:  TxnRequest decoded, txn_shape, the decoded request handed to the apply
            (a dict entry and a done callback on the proposal's future)

    python -m bench.probes.experiments.txn_route_cost [--ops 1 16] [--reps 7]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import timeit

from kvcore.api import rpc_pb2
from kvcore.api.rules import is_txn_readonly, txn_puts, txn_shape


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000)
    a = ap.parse_args(argv)
    loop = asyncio.new_event_loop()
    for n in a.ops:
        req = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=b"k%07d" % i, value=b"v" * 256)) for i in range(n)]).SerializeToString()
        held: dict = {}

        def before():
            r = rpc_pb2.TxnRequest.FromString(req)
            is_txn_readonly(r)
            txn_puts(r)
            loop.create_future()                    # the proposal's future
            rpc_pb2.TxnRequest.FromString(req)      # the apply's decode

        def after():
            r = rpc_pb2.TxnRequest.FromString(req)
            txn_shape(r)
            fut = loop.create_future()
            held[fut] = r
            fut.add_done_callback(lambda f: held.pop(f, None))
            held.pop(fut, req)                      # the apply takes it

        runs: dict = {"before": [], "after": []}
        for _ in range(a.reps):
            for name, fn in (("before", before), ("after", after)):
                runs[name].append(timeit.timeit(fn, number=a.number) / a.number * 1e6)
        med = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
        print(f"txn of {n} put(s): before {med['before']:.2f} us, after {med['after']:.2f} us "
              f"(median of {a.reps}; per round before "
              + " ".join(f"{x:.1f}" for x in runs["before"]) + ", after "
              + " ".join(f"{x:.1f}" for x in runs["after"]) + ")")
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
