"""etcd's own load tool (`benchmark`, tools/benchmark of etcd 3.4.23) against a kvcore
member and an etcd 3.5.1 member, alternating rounds: what a user who compares the two
with etcd's tool sees.

    python -m bench.probes.etcd_tool [--rounds 5] [--total 30000] [--workers 2]
                                     [--etcd-bin BIN]   (etcd 3.5.1's by default)

One member each, fresh data dir each round, 10 connections x 100 clients; put (8-byte
sequential keys, 256-byte values), range of one key linearizable and serializable.
The tool is built by tests/clients/etcd_benchmark/build.sh (cached). Prints each
round, then per scenario both servers' rates, the per-round ratios and their median.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile

from tests import etcd351, servers

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "..", "tests", "clients", "etcd_benchmark", "build.sh")
CASES = {"put": ["put", "--key-size=8", "--val-size=256", "--sequential-keys"],
         "range-l": ["range", "foo", "--consistency=l"],
         "range-s": ["range", "foo", "--consistency=s"]}


def _rate(tool: str, endpoint: str, total: int, args: list) -> float:
    p = subprocess.run([tool, f"--endpoints={endpoint}", "--conns=10", "--clients=100",
                        f"--total={total}", *args], capture_output=True, text=True,
                       timeout=600)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    if not m:
        raise RuntimeError(f"benchmark {args[0]} printed no rate:\n{p.stdout}\n{p.stderr}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--total", type=int, default=30000)
    ap.add_argument("--workers", type=int, default=2, help="kvcore's --workers")
    ap.add_argument("--etcd-bin", default=etcd351.ETCD, help="the etcd to compare with")
    a = ap.parse_args()
    tool = subprocess.run(["bash", BUILD], capture_output=True, text=True,
                          check=True).stdout.strip()
    res = {c: {"kvcore": [], "etcd": []} for c in CASES}
    for r in range(a.rounds):
        for kind in (("kvcore", "etcd") if r % 2 == 0 else ("etcd", "kvcore")):
            d = tempfile.mkdtemp(prefix=f"etcd-tool-{kind}-")
            srv = (servers.start_kvcore(d + "/data", workers=a.workers) if kind == "kvcore"
                   else servers.start_etcd(d + "/data", binary=a.etcd_bin))
            try:
                servers.etcdctl(srv.endpoint, "put", "foo", "bar")
                for case, args in CASES.items():
                    res[case][kind].append(_rate(tool, srv.endpoint, a.total, args))
            finally:
                srv.stop()
                shutil.rmtree(d, ignore_errors=True)
        print(f"round {r}: " + ", ".join(f"{c} {v['kvcore'][-1]:.0f}/{v['etcd'][-1]:.0f}"
                                         for c, v in res.items())
              + f" (kvcore/etcd req/s; load {os.getloadavg()[0]:.1f})", flush=True)
    for c, v in res.items():
        ratios = [k / e for k, e in zip(v["kvcore"], v["etcd"])]
        print(f"{c}: kvcore {[round(x) for x in v['kvcore']]} {a.etcd_bin} "
              f"{[round(x) for x in v['etcd']]} ratios {[round(x, 2) for x in ratios]} "
              f"median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
