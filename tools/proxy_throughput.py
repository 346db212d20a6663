"""Throughput through a gRPC proxy: kvcore's and etcd 3.5.1's, each in front of a
one-member cluster of its own kind, measured with `python -m bench` (serializable
range, put; 10 and 100 clients over as many connections, bounded by --total and
--max-seconds).

    PYTHONPATH=. python3 tools/proxy_throughput.py [--total 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import etcd351, servers  # noqa: E402
from tests.proxy.test_grpc_proxy import start_proxy  # noqa: E402


def bench(addr: str, clients: int, total: int, *cmd) -> float:
    out = subprocess.run([sys.executable, "-m", "bench", f"--endpoints={addr}",
                          f"--conns={min(clients, 10)}", f"--clients={clients}",
                          f"--total={total}", "--max-seconds=30", "--no-progress",
                          "--json", "-", *cmd], capture_output=True, text=True, timeout=120)
    doc = json.loads(out.stdout)
    return doc.get("rps") or doc.get("summary", {}).get("rps") or 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--total", type=int, default=5000)
    total = min(ap.parse_args().total, 20000)
    base = tempfile.mkdtemp()
    for kind in ("kvcore", "etcd"):
        m = (servers.start_kvcore(os.path.join(base, "kv.etcd")) if kind == "kvcore"
             else servers.start_etcd(os.path.join(base, "etcd.etcd"), binary=etcd351.ETCD))
        proxy, addr = start_proxy(kind, base, [m])
        try:
            for clients in (10, 100):
                r = bench(addr, clients, total, "range", "foo", "--consistency", "s")
                p = bench(addr, clients, total, "put")
                print(f"{kind:7s} grpc-proxy, {clients:3d} clients: range(s) {r:8.0f}/s  "
                      f"put {p:8.0f}/s")
        finally:
            proxy.terminate()
            proxy.wait(10)
            m.stop()


if __name__ == "__main__":
    main()
