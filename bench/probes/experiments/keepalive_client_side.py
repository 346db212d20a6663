"""What a keep-alive costs the load client, against kvcore and etcd 3.5.1 side by side.

    python -m bench.probes.experiments.keepalive_client_side [--rounds 3] [--total 100000]
                                                            [--tree NAME=DIR]...

Runs `kvcore-bench --conns 10 --clients 100 lease-keepalive` against each server in
rotating order and prints per keep-alive: the client's CPU, the server's CPU (every
process, from /proc), and what the client received: reads (data_received calls),
bytes, and HTTP/2 frames by type. The frames are counted in a child process that
wraps bench.client.Conn.data_received (frames split across reads are counted where
their header starts), so the wrapper's own cost is inside the client CPU here: compare
the servers with each other, not with `bench.probes.bulk`.

The syscalls of a run: `strace -c -f` on the client (or `-p` on each server pid) of a
bounded run, as written in docs/decisions.md.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile

from bench.probes.bulk import ETCD351, HERE, cpu_ticks, etcd_server, kvcore, start_ready

# Runs in the bench child: count reads, bytes and frame types, then run `python -m bench`.
_CHILD = r"""
import atexit, collections, runpy, sys
from bench import client
counts = collections.Counter()
inner = client.Conn.data_received
def data_received(self, data):
    counts["reads"] += 1
    counts["bytes"] += len(data)
    p, n = 0, len(data)
    while n - p >= 9:
        counts["frame type %d" % data[p + 3]] += 1
        p += 9 + int.from_bytes(data[p:p + 3], "big")
    return inner(self, data)
client.Conn.data_received = data_received
out_path = sys.argv.pop(1)
atexit.register(lambda: open(out_path, "w").write(repr(dict(counts))))
sys.argv[0] = "bench"
runpy.run_module("bench", run_name="__main__", alter_sys=True)
"""
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING",
               7: "GOAWAY", 8: "WINDOW_UPDATE"}


def run(server, total: int) -> dict:
    host, port = server.endpoint
    with tempfile.NamedTemporaryFile("r", suffix=".counts") as f:
        cmd = [sys.executable, "-c", _CHILD, f.name, "--endpoints", f"{host}:{port}",
               "--no-progress", "--max-seconds", "120", "--json", "-", "--conns", "10",
               "--clients", "100", "--total", str(total), "lease-keepalive"]
        pids = server.pids()
        c0 = cpu_ticks(pids)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, PYTHONPATH=HERE))
        server_s = (cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK")
        if out.returncode or "{\n" not in out.stdout:
            raise RuntimeError(f"bench failed ({out.returncode}): {out.stderr[-500:]}")
        res = json.loads(out.stdout[out.stdout.index("{\n"):])
        counts = ast.literal_eval(f.read())
    ok = res["ok"] or 1
    per = {}
    for k, v in sorted(counts.items()):
        if k.startswith("frame type "):
            t = int(k.rsplit(" ", 1)[1])
            k = FRAME_NAMES.get(t, k)
        per[k] = round(v / ok, 3)
    return {"rate": round(res["rps"]), "client_us": round(1e6 * res["generator"]["cpu_s"] / ok, 2),
            "server_us": round(1e6 * server_s / ok, 2), "per_keepalive": per}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--etcd-bin", default=ETCD351)
    a = ap.parse_args(argv)
    trees = [t.split("=", 1) for t in a.tree] or [["kvcore", HERE]]
    servers = [kvcore(n, os.path.abspath(d)) for n, d in trees] + [etcd_server(a.etcd_bin)]
    try:
        start_ready(servers)
        for r in range(a.rounds):
            for s in servers[r % len(servers):] + servers[:r % len(servers)]:
                print(f"round {r + 1} {s.name:>12}: {run(s, a.total)}", flush=True)
    finally:
        for s in servers:
            s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
