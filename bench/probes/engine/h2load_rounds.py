"""Throughput of the native engine vs grpcio's server, the ngh2 binding and nghttpd,
by h2load in alternating rounds (the host is shared: quote median ratios).

    python -m bench.probes.engine.h2load_rounds --rounds 5 -c 10 -m 10 -n 100000 [--size 100]
        [--targets native,grpcio,ngh2,nghttpd] [--grpcio-n 10000]

(the figures in docs/decisions.md were taken with ``--targets native,grpcio,ngh2,nghttpd``;
ngh2 is not a kvcore dependency: ``pip install ngh2==0.3.0`` to include it)

Every target answers one request with the same number of body bytes: the gRPC
servers return a ``--size``-byte message (5-byte prefix + size bytes of DATA, plus
grpc-status trailers); nghttpd serves a file of ``size + 5`` bytes. The gRPC
request is a framed 10-byte message, sent by h2load as POST with
content-type application/grpc. Prints each round and the median of the per-round
ratios native/other, and the server process's CPU time per call (utime+stime
from /proc, robust to a busy host).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start(target: str, port: int, size: int, tmp: str) -> subprocess.Popen:
    if target == "nghttpd":
        with open(os.path.join(tmp, "f"), "wb") as f:
            f.write(b"v" * (size + 5))
        cmd = ["nghttpd", "--no-tls", "-d", tmp, str(port)]
    else:
        cmd = [sys.executable, "-m", "bench.probes.engine.server", "--engine", target,
               "--port", str(port), "--size", str(size)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def h2load(target: str, port: int, n: int, c: int, m: int, req: str) -> float:
    if target == "nghttpd":
        cmd = ["h2load", "-n", str(n), "-c", str(c), "-m", str(m), f"http://127.0.0.1:{port}/f"]
    else:
        cmd = ["h2load", "-n", str(n), "-c", str(c), "-m", str(m), "-d", req,
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://127.0.0.1:{port}/bench.B/Fixed"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    if not done or not rps or done.group(1) != done.group(2) or int(done.group(2)) != n:
        raise RuntimeError(f"h2load against {target} failed:\n{out}")
    return float(rps.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-c", type=int, default=10)
    ap.add_argument("-m", type=int, default=10)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--targets", default="native,grpcio,nghttpd",
                    help="comma list of native, grpcio, ngh2 (needs `pip install "
                         "ngh2==0.3.0`), nghttpd")
    ap.add_argument("--grpcio-n", type=int, default=10000,
                    help="requests per grpcio round (it is ~30x slower)")
    a = ap.parse_args()
    targets = a.targets.split(",")
    tmp = tempfile.mkdtemp()
    req = os.path.join(tmp, "req.bin")
    with open(req, "wb") as f:
        f.write(b"\x00" + (10).to_bytes(4, "big") + b"k" * 10)
    procs, ports = {}, {}
    try:
        for t in targets:
            ports[t] = free_port()
            procs[t] = start(t, ports[t], a.size, tmp)
        for t in targets:   # warm up
            h2load(t, ports[t], 2000, a.c, a.m, req)
        results = {t: [] for t in targets}
        cpu = {t: [] for t in targets}
        for r in range(a.rounds):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for t in order:
                n = a.grpcio_n if t == "grpcio" else a.n
                c0 = cpu_seconds(procs[t].pid)
                results[t].append(h2load(t, ports[t], n, a.c, a.m, req))
                cpu[t].append((cpu_seconds(procs[t].pid) - c0) / n * 1e6)
            print(f"round {r + 1}: " + "  ".join(f"{t}={results[t][-1]:,.0f}/s" for t in targets),
                  flush=True)
        print(f"h2load -c {a.c} -m {a.m}, {a.size}-byte responses, {a.rounds} rounds")
        for t in targets:
            print(f"  {t:8s} median {statistics.median(results[t]):>10,.0f} req/s, "
                  f"server CPU {statistics.median(cpu[t]):6.1f} us/call")
        if "native" in targets:
            for t in targets:
                if t == "native":
                    continue
                ratios = [x / y for x, y in zip(results["native"], results[t])]
                print(f"  native/{t}: median ratio {statistics.median(ratios):.2f} "
                      f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
