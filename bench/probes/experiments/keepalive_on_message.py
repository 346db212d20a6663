"""The core's Python per LeaseKeepAlive message, in one process: the real
LeaseService, KeepAliveStream, Lessor and wire.Headers behind a stand-in server
context; 100 streams, each renewing its own lease, 100 messages each per run.

    python -m bench.probes.experiments.keepalive_on_message [--reps 5]
"""
from __future__ import annotations

import argparse
import time
import timeit

from kvcore.api import rpc_pb2, wire
from kvcore.lease.lessor import Lease, Lessor
from kvcore.services.lease import KeepAliveStream, LeaseService


class _Ctx:
    """What KeepAliveStream and LeaseService.renew read of the server context."""

    class metrics:
        leases_renewed = 0

    class store:
        current_rev = 12345

    class raft:
        term = 3

    def __init__(self):
        self.lessor = Lessor(None, 1)
        self._headers = wire.Headers()
        self.cluster_id, self.member_id = 0x1234567890ABCDEF, 0xFEDCBA0987654321

    def header(self, rev: int) -> bytes:
        return self._headers.get(self.cluster_id, self.member_id, rev, self.raft.term)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    ctx = _Ctx()
    for i in range(100):
        lease = Lease(1000 + i, 60)
        lease.expiry = time.monotonic() + 600
        ctx.lessor.leases[1000 + i] = lease
    svc = LeaseService(ctx)
    sent: list = []

    class _Out:
        reply = staticmethod(sent.append)

    streams = [KeepAliveStream(svc, _Out()) for _ in range(100)]
    reqs = [rpc_pb2.LeaseKeepAliveRequest(ID=1000 + i).SerializeToString() for i in range(100)]

    def run():
        for _ in range(100):
            for s, r in zip(streams, reqs):
                s.on_message(r)
        sent.clear()

    run()
    per = [timeit.timeit(run, number=10) / 100000 * 1e6 for _ in range(a.reps)]
    print(f"on_message: median {sorted(per)[len(per) // 2]:.3f} us per keep-alive "
          f"[{', '.join(f'{x:.3f}' for x in per)}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
