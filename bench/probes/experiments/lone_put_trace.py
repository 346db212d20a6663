"""Where a lone put's time goes in the core: a timestamp trace.

Starts a one-member kvcore from a source tree with probes wrapped around the core's
write path (IPC frame in, propose, Raft cycle, WAL write and fdatasync, the staged
apply where the tree has one, apply, the answer's write), runs 1x1 puts against it
and prints each probe's median offset from the IPC frame's arrival. Each probe adds
about a microsecond; compare trees with each other, not with untraced latencies.

    python -m bench.probes.experiments.lone_put_trace --tree /work/main [--total 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time

# probe name -> (module, class, method, mark on entry, mark on return)
PROBES = [
    ("kvcore.server.core", "Core", "propose", "propose", None),
    ("kvcore.raftdriver.driver", "RaftDriver", "_pump", "pump", None),
    ("kvcore.raftdriver.walstore", "WalStore", "save", "wal save", None),
    ("kvcore.raftdriver.walstore", "WalStore", "_write_now", "write+sync in", "write+sync out"),
    ("kvcore.server.core", "Core", "stage_apply", "stage in", "stage out"),
    ("kvcore.raftdriver.driver", "RaftDriver", "_stored", None, "raft stored"),
    ("kvcore.server.core", "Core", "_apply", "apply in", "apply out"),
    ("kvcore.ipc.framing", "FrameProtocol", "_flush", None, "answer written"),
]


def serve(out: str, argv: list) -> None:
    """Run the core with the probes (this process becomes the member)."""
    import importlib
    clock = time.perf_counter_ns
    state = {"cur": None, "rows": []}

    def mark(name):
        cur = state["cur"]
        if cur is not None and name not in cur:
            cur[name] = clock() - cur["t0"]

    for mod, cls, meth, before, after in PROBES:
        klass = getattr(importlib.import_module(mod), cls)
        orig = getattr(klass, meth, None)
        if orig is None:   # a tree without that step
            continue

        def wrapped(*a, _orig=orig, _b=before, _a=after, **k):
            if _b:
                mark(_b)
            r = _orig(*a, **k)
            if _a:
                mark(_a)
            return r
        setattr(klass, meth, wrapped)

    from kvcore.ipc import framing, server
    received = framing.FrameProtocol.data_received

    def data_received(self, data):
        if isinstance(self, server.CoreConnection):
            cur = state["cur"]
            if cur is not None and "answer written" in cur:
                state["rows"].append(cur)
                if len(state["rows"]) % 250 == 0:
                    with open(out, "w") as f:
                        json.dump(state["rows"], f)
            state["cur"] = {"t0": clock()}
        return received(self, data)
    framing.FrameProtocol.data_received = data_received
    sys.argv = ["kvcore"] + argv
    runpy.run_module("kvcore", run_name="__main__")


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tree", required=True, help="kvcore source tree")
    ap.add_argument("--total", type=int, default=3000)
    ap.add_argument("--skip", type=int, default=200, help="first puts left out (warm-up)")
    a = ap.parse_args(argv)
    from bench.servers import Server
    tree = os.path.abspath(a.tree)
    fd, out = tempfile.mkstemp(prefix="lone-put-trace-", suffix=".json")
    os.close(fd)
    # Run as a script, so that only the tree's kvcore is on the server's path.
    srv = Server("traced", [sys.executable, os.path.abspath(__file__), "--serve", out],
                 "kvcore", extra=["--workers", "2"], env={"PYTHONPATH": tree})
    srv.start()
    err = srv.wait_ready()
    try:
        if err:
            raise RuntimeError(err)
        put = [sys.executable, "-m", "bench", "--endpoints", f"127.0.0.1:{srv.port}",
               "--conns", "1", "--clients", "1", "--no-progress", "--total", str(a.total),
               "--json", "-", "put"]
        r = subprocess.run(put, env=dict(os.environ, PYTHONPATH=tree), capture_output=True,
                           text=True, timeout=600, check=True)
        d = json.loads(r.stdout)
        time.sleep(0.5)
    finally:
        srv.stop()
    with open(out) as f:
        rows = json.load(f)[a.skip:]
    os.unlink(out)
    print(f"{a.tree}: {len(rows)} puts traced, client p50 {d['latency']['p50_ms']:.3f} ms")
    names = sorted({k for r in rows for k in r if k != "t0"},
                   key=lambda k: sorted(r[k] for r in rows if k in r)[
                       sum(1 for r in rows if k in r) // 2])
    for k in names:
        xs = sorted(r[k] for r in rows if k in r)
        print(f"  {k:16} {xs[len(xs) // 2] / 1000:8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
