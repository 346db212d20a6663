"""Throughput through a gRPC proxy, kvcore's and etcd 3.5.1's, both in front of the
same one-member cluster (issue 21, acceptance 4).

Cells: serializable range and put, 10 and 100 clients (over 10 connections), each a
`python -m bench` run bounded by --total and 30 s. Rounds alternate which proxy goes
first. Besides requests per second, the proxy process's CPU per request (user+sys
from /proc/<pid>/stat across the cell) is reported: on a shared, noisy host it moves
much less than throughput does.

    python -m bench.probes.proxy_throughput [--total 3000] [--rounds 5] [--cluster kvcore]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from tests import etcd351, servers
from tests.proxy.proxyctl import start_proxy

CELLS = [("range(s)", 10, ("range", "foo", "--consistency", "s")),
         ("range(s)", 100, ("range", "foo", "--consistency", "s")),
         ("put", 10, ("put",)), ("put", 100, ("put",))]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK      # utime + stime


def bench(addr: str, clients: int, total: int, cmd: tuple) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench", f"--endpoints={addr}",
                          f"--conns={min(clients, 10)}", f"--clients={clients}",
                          f"--total={total}", "--max-seconds=30", "--no-progress",
                          "--json", "-", *cmd], capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def cell(proxy, addr: str, clients: int, total: int, cmd: tuple) -> tuple:
    c0 = cpu_seconds(proxy.pid)
    doc = bench(addr, clients, total, cmd)
    c1 = cpu_seconds(proxy.pid)
    ok = max(1, int(doc.get("ok", 0)))
    return float(doc.get("rps", 0.0)), (c1 - c0) * 1e6 / ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cluster", choices=("kvcore", "etcd"), default="kvcore")
    a = ap.parse_args()
    total, rounds = min(a.total, 20000), min(a.rounds, 9)
    base = tempfile.mkdtemp()
    m = (servers.start_kvcore(os.path.join(base, "member")) if a.cluster == "kvcore"
         else servers.start_etcd(os.path.join(base, "member"), binary=etcd351.ETCD))
    proxies = {}
    try:
        for kind in ("kvcore", "etcd"):
            proxies[kind] = start_proxy(kind, base, [m])
        for kind, (p, addr) in proxies.items():          # warm-up, and the range's key
            bench(addr, 10, 500, ("put", "--key-space-size", "1"))
            bench(addr, 10, 500, ("range", "foo", "--consistency", "s"))
        res: dict = {}                                   # (kind, cell) -> [(rps, cpu)]
        for r in range(rounds):
            order = ("kvcore", "etcd") if r % 2 == 0 else ("etcd", "kvcore")
            for name, clients, cmd in CELLS:
                for kind in order:
                    p, addr = proxies[kind]
                    v = cell(p, addr, clients, total, cmd)
                    res.setdefault((kind, name, clients), []).append(v)
                    print(f"round {r + 1} {kind:6s} {name:8s} {clients:3d} clients: "
                          f"{v[0]:8.0f}/s  proxy CPU {v[1]:6.1f} µs/request", flush=True)
        print(f"\nmedians of {rounds} rounds, {total} requests per cell, one {a.cluster} "
              f"member behind both proxies:")
        print("| cell | kvcore req/s | etcd req/s | ratio | kvcore CPU µs/req | etcd CPU µs/req |")
        print("|---|---|---|---|---|---|")
        for name, clients, _ in CELLS:
            k = res[("kvcore", name, clients)]
            e = res[("etcd", name, clients)]
            kr, er = statistics.median(x[0] for x in k), statistics.median(x[0] for x in e)
            kc, ec = statistics.median(x[1] for x in k), statistics.median(x[1] for x in e)
            print(f"| {name} {clients} clients | {kr:,.0f} | {er:,.0f} | {kr / er:.2f}x "
                  f"| {kc:.1f} | {ec:.1f} |")
    finally:
        for p, _ in proxies.values():
            p.terminate()
            p.wait(10)
        m.stop()


if __name__ == "__main__":
    main()
