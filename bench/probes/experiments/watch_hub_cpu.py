"""The watch hub's CPU per response, in process, two source trees compared.

10 streams x 1,000 watchers of one key on a fresh store; each round writes the key
REVS times and then either fans every revision out as it is written (``fanout``) or
lets every watcher catch up from history at once (``catchup``). Prints the hub's CPU
(process time) per response sent; the IPC stream is a stub that takes everything.
Each tree runs in its own interpreter (PYTHONPATH=tree), alternating.

    python -m bench.probes.experiments.watch_hub_cpu --a /work/main --b . [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

STREAMS, PER_STREAM, REVS, ROUNDS_IN_RUN = 10, 1000, 10, 10


def run_here(mode: str) -> float:
    """-> microseconds of CPU per response (this interpreter's kvcore)."""
    from kvcore.api import rpc_pb2
    from kvcore.ipc import framing
    from kvcore.lease.lessor import Lessor
    from kvcore.mvcc.kvops import KVApplier
    from kvcore.mvcc.store import KVStore
    from kvcore.mvcc.watch import WatchHub, WatchStream
    from kvcore.storage.backend import Backend

    class Out:
        def __init__(self):
            self.n = 0

        def can_send(self):
            return True

        def send(self, p):
            self.n += 1

        def send_batch(self, ps):
            self.n += len(ps)

        def send_packed(self, p):
            self.n += framing.unpack_batch(p)[0]

    d = tempfile.mkdtemp(prefix="watch-hub-cpu-")
    b = Backend(os.path.join(d, "db"), map_size=256 << 20)
    store = KVStore(b)
    kv = KVApplier(store, Lessor(b, 1))
    hdr = b"\x08\x01\x10\x02\x18\x05\x20\x02"
    hub = WatchHub(store, lambda rev: hdr, 1 << 20)
    outs = [Out() for _ in range(STREAMS)]
    streams = [WatchStream(hub, o) for o in outs]
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b"watch-0_")).SerializeToString()
    for ws in streams:
        for _ in range(PER_STREAM):
            ws.on_message(create)
    watchers = [w for ws in streams for w in ws.watchers.values()]
    sent0 = sum(o.n for o in outs)
    cpu = 0.0
    for rnd in range(ROUNDS_IN_RUN):
        if mode == "catchup":
            for w in watchers:      # as if every stream had been out of room
                hub._unsync(w)
                hub.unsynced.add(w)
        for i in range(REVS):
            with b.begin_write() as txn:
                w = store.write(txn)
                kv.put(w, rpc_pb2.PutRequest(key=b"watch-0_", value=b"%08d" % i))
                w.end()
            if mode == "fanout":
                t = time.process_time()
                with b.begin_read() as rtxn:
                    hub.notify(rtxn, w.begin_rev + 1, w.changes)
                cpu += time.process_time() - t
        if mode == "catchup":
            t = time.process_time()
            with b.begin_read() as rtxn:
                while hub.catch_up(rtxn):
                    pass
            cpu += time.process_time() - t
    b.close()
    return 1e6 * cpu / (sum(o.n for o in outs) - sent0)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(run_here(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    for mode in ("fanout", "catchup"):
        got: dict = {a.a: [], a.b: []}
        for r in range(a.rounds):
            for tree in ((a.a, a.b) if r % 2 == 0 else (a.b, a.a)):
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--child", mode],
                    capture_output=True, text=True, timeout=600,
                    env=dict(os.environ, PYTHONPATH=os.path.abspath(tree)))
                if out.returncode:
                    raise SystemExit(out.stderr[-2000:])
                got[tree].append(float(out.stdout.split()[-1]))
        for tree, vals in got.items():
            print(f"{mode:8s} {tree}: median {statistics.median(vals):.2f} us/response "
                  f"[{', '.join(f'{v:.2f}' for v in vals)}]")


if __name__ == "__main__":
    main()
