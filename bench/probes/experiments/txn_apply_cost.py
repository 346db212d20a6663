"""The apply of 16-put Txns in one process (no server, no IPC): KVApplier.txn on a
fresh store, ``--batch`` Txns per LMDB write transaction (the core commits once per
Raft apply batch, ~50 Txns at 6k Txn/s), keys drawn from 100,000. Prints the CPU
(process time) per Txn of the apply and of the commit, per run.

    python -m bench.probes.experiments.txn_apply_cost [--txns 3000] [--batch 50]
        [--runs 5] [--writemap]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

import lmdb

from kvcore.api import rpc_pb2
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.store import KVStore
from kvcore.storage.backend import Backend


class _Leases:
    def exists(self, lease_id: int) -> bool:
        return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--txns", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--writemap", action="store_true", help="open LMDB with MDB_WRITEMAP")
    a = ap.parse_args(argv)
    d = tempfile.mkdtemp()
    try:
        if a.writemap:
            real_open = lmdb.open
            lmdb.open = lambda *p, **kw: real_open(*p, writemap=True, **kw)
        b = Backend(os.path.join(d, "db"), map_size=1 << 30)
        store = KVStore(b)
        kv = KVApplier(store, _Leases())
        rnd = random.Random(1)
        reqs = [rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=b"%08d" % n, value=bytes(8))) for n in rnd.sample(range(100000), 16)])
            for _ in range(a.txns)]

        def run():
            apply = commit = 0.0
            for i in range(0, len(reqs), a.batch):
                t0 = time.process_time()
                with b.begin_write() as txn:
                    for r in reqs[i:i + a.batch]:
                        w = store.write(txn)
                        kv.txn(w, r)
                        w.end()
                    t1 = time.process_time()
                commit += time.process_time() - t1
                apply += t1 - t0
            return apply / len(reqs) * 1e6, commit / len(reqs) * 1e6

        run()   # the keys exist from here on
        res = [run() for _ in range(a.runs)]
        print("apply us/txn", [round(x[0], 1) for x in res],
              "commit us/txn", [round(x[1], 1) for x in res])
        b.env.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
