"""JSON gateway throughput and CPU per request, kvcore against etcd 3.5.1 (issue 18,
acceptance 4), in alternating rounds on a shared host.

    python -m bench.probes.gateway_rounds [--rounds 5] [--routes range,put] [--conns 10,100]
        [--n-range 6000] [--n-put 4000] [--workers 2]

One kvcore member (``--workers`` worker processes) and one etcd 3.5.1 member, each on
its own data dir, serve unary ``/v3/kv/range`` (a 3-byte key that exists) and
``/v3/kv/put`` (3-byte key, 3-byte value) from ``h2load --h1``. Each round runs every
(route, connections) cell on kvcore then etcd (the order flips every round). Reported
per cell: median req/s of each, the median of the per-round ratios kvcore/etcd, and
the CPU time (utime+stime, /proc) of the serving processes, the member's root process
and its children, per 1,000 requests: a figure the other load on the host moves less
than throughput.
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

BODIES = {"range": '{"key":"Zm9v"}', "put": '{"key":"Zm9v","value":"YmFy"}'}
HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int) -> float:
    pids = [root]
    try:
        out = subprocess.run(["pgrep", "-P", str(root)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / HZ


def h2load(port: int, route: str, body_file: str, n: int, c: int) -> float:
    out = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(c), "-d", body_file,
                          "-H", "content-type: application/json",
                          f"http://127.0.0.1:{port}/v3/kv/{route}"],
                         capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not m or not ok or int(ok.group(1)) != n:
        raise RuntimeError(f"h2load failed:\n{out}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--routes", default="range,put")
    ap.add_argument("--conns", default="10,100")
    ap.add_argument("--n-range", type=int, default=6000)
    ap.add_argument("--n-put", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="gw-rounds-")
    bodies = {}
    for r, b in BODIES.items():
        bodies[r] = os.path.join(tmp, r + ".json")
        with open(bodies[r], "w") as f:
            f.write(b)
    kv = servers.start_kvcore(os.path.join(tmp, "kv.etcd"), workers=a.workers)
    et = None
    try:
        et = servers.start_etcd(os.path.join(tmp, "etcd.etcd"), binary=etcd351.ETCD)
        members = {"kvcore": kv, "etcd": et}
        for m in members.values():     # the key exists; warm-up
            h2load(m.port, "put", bodies["put"], 500, 10)
            h2load(m.port, "range", bodies["range"], 500, 10)
        cells = [(r, int(c)) for r in a.routes.split(",") for c in a.conns.split(",")]
        rps = {(cell, s): [] for cell in cells for s in members}
        cpu = {(cell, s): [] for cell in cells for s in members}
        ratios = {cell: [] for cell in cells}
        for rnd in range(a.rounds):
            order = ["kvcore", "etcd"] if rnd % 2 == 0 else ["etcd", "kvcore"]
            for cell in cells:
                route, c = cell
                n = a.n_range if route == "range" else a.n_put
                got = {}
                for s in order:
                    m = members[s]
                    c0 = cpu_seconds(m.proc.pid)
                    got[s] = h2load(m.port, route, bodies[route], n, c)
                    cpu[(cell, s)].append((cpu_seconds(m.proc.pid) - c0) * 1e6 / n)
                    rps[(cell, s)].append(got[s])
                ratios[cell].append(got["kvcore"] / got["etcd"])
                print(f"round {rnd + 1} {route:5s} c={c:<3d} kvcore {got['kvcore']:8.0f} "
                      f"etcd {got['etcd']:8.0f} req/s  ratio {ratios[cell][-1]:.2f}  "
                      f"CPU ms/1000 kvcore {cpu[(cell, 'kvcore')][-1]:.0f} etcd "
                      f"{cpu[(cell, 'etcd')][-1]:.0f}", flush=True)
        print(f"\n| route, conns | kvcore req/s (median, range) | etcd 3.5.1 | median ratio "
              f"| CPU ms/1000 kvcore / etcd |\n|---|---|---|---|---|")
        for cell in cells:
            k, e = rps[(cell, "kvcore")], rps[(cell, "etcd")]
            print(f"| /v3/kv/{cell[0]}, {cell[1]} | {statistics.median(k):.0f} "
                  f"({min(k):.0f}-{max(k):.0f}) | {statistics.median(e):.0f} "
                  f"({min(e):.0f}-{max(e):.0f}) | {statistics.median(ratios[cell]):.2f} | "
                  f"{statistics.median(cpu[(cell, 'kvcore')]):.0f} / "
                  f"{statistics.median(cpu[(cell, 'etcd')]):.0f} |")
    finally:
        kv.stop()
        if et is not None:
            et.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
