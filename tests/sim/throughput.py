"""Throughput of the Raft core alone (no I/O): a 3-node cluster in the simulator with a
perfect network, the leader proposing batches of 1, 64 and 1024 entries.  Each round
proposes one batch and runs the cluster until it is applied on every node (so the figure
includes three nodes' worth of Raft work in one process: leader + 2 followers, with
in-memory storage and a trivial state machine; no safety checks).

    python -m tests.sim.throughput [--entries 20000] [--size 100] [--codec]

``--codec`` also encodes/decodes every message (what crossing the network costs).
"""
from __future__ import annotations

import argparse
import sys
import time

from .cluster import Cluster, Scenario


def make_cluster(codec: bool) -> Cluster:
    sc = Scenario(1)
    sc.n = 3
    sc.pre_vote = sc.check_quorum = False
    sc.drop = sc.dup = 0.0
    sc.max_delay = 0
    sc.crash_rate = sc.partition_rate = 0.0
    sc.max_inflight = 256
    sc.max_size_per_msg = 1 << 20
    cl = Cluster(sc, check=False, codec=codec)
    cl.nodes[1].raw.campaign()
    cl.process_ready(cl.nodes[1])
    cl.deliver_due()
    assert cl.leader() is cl.nodes[1]
    return cl


def measure(batch: int, entries: int, size: int, codec: bool) -> tuple[float, int]:
    cl = make_cluster(codec)
    ld = cl.nodes[1]
    payload = b"x" * size
    rounds = max(1, entries // batch)
    datas = [payload] * batch
    t0 = time.perf_counter()
    start_applied = ld.sm.applied
    for i in range(rounds):
        if batch == 1:
            ld.raw.propose(payload)
        else:
            ld.raw.propose_batch(datas)
        cl.process_ready(ld)
        cl.deliver_due()
        if i % 256 == 255:
            for node in cl.nodes.values():  # keep memory flat: compact applied log
                node.storage.compact(node.sm.applied)
    dt = time.perf_counter() - t0
    done = ld.sm.applied - start_applied
    for node in cl.nodes.values():
        assert node.sm.applied == ld.sm.applied, "not applied everywhere"
    return done / dt, done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--size", type=int, default=100, help="bytes per entry")
    ap.add_argument("--codec", action="store_true", help="encode/decode every message")
    ap.add_argument("--batches", default="1,64,1024")
    ap.add_argument("--repeat", type=int, default=3, help="runs per batch size (best "
                    "and median reported: the machine is shared)")
    a = ap.parse_args(argv)
    print(f"3 nodes, {a.size}-byte entries, codec={'on' if a.codec else 'off'}, "
          f"python {sys.version.split()[0]}")
    for b in (int(x) for x in a.batches.split(",")):
        n = max(a.entries, b * 20)
        if b == 1:
            n = min(n, a.entries // 2)
        rates = sorted(measure(b, n, a.size, a.codec)[0] for _ in range(a.repeat))
        print(f"batch {b:>5}: best {rates[-1]:>10,.0f}  median "
              f"{rates[len(rates) // 2]:>10,.0f} entries committed/s  ({n} entries x "
              f"{a.repeat} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
