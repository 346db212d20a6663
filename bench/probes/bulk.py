"""The bulk paths side by side: kvcore tree(s) and etcd 3.5.1, alternating rounds.

    python -m bench.probes.bulk SCENARIO [--rounds 5] [--tree NAME=DIR]... [--no-etcd]
                                [--etcd-bin BIN] [--json FILE]

Scenarios (each one `kvcore-bench` run per server per round, unless said otherwise):

  watch        `watch --streams 10 --put-total 2000`: 1,000 watchers, 2M events
  watch-1key   `watch --streams 10 --watch-per-stream 1000 --put-total 100`: 10,000
               watchers on one key, 1M events
  watch-latency-100  `watch-latency --put-total 300 --watchers-per-stream 100`: the
               p50 latency from a put to each of 1,000 watchers (10 streams)
  keepalive    `--conns 10 --clients 100 --total 200000 lease-keepalive`
  range-10k    10,000 keys x 1 KiB preloaded; `range` of all of them, serializable
               and linearizable, 1 connection, 1 in flight, 100 requests each
  put-1mib     100 puts of a 1 MiB value, one at a time, over grpcio (the bench
               client sends a request in one DATA frame, so at most 16 KiB)
  txn16        `--conns 10 --clients 100 --total 20000 txn-put --txn-ops 16`
  million      1,000,000 keys (8 B keys, 64 B values) loaded once per server; then the
               summed RSS of every server process, and restart-to-serving time
               (SIGTERM, start on the same data dir, first serializable Range answered)

Besides the rate, each run reports the CPU seconds (user+sys from /proc/PID/stat) the
server's processes spent per operation, since on a shared host wall-clock rates move
with the neighbours' load while CPU per operation does not; and the load client's CPU
per operation (it shares the cores, so on 2 cores the rate follows client + server CPU).
Inside a round every server runs once; the order rotates from round to round; medians
over the rounds.

``--tree NAME=DIR`` runs kvcore from a checkout (PYTHONPATH=DIR), several for an A/B;
the default is this checkout, named kvcore.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import grpc

from bench.servers import ETCD351, Server, etcd_server, memory_kib, rss_kib
from kvcore.api import rpc_pb2, rpc_pb2_grpc

HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCENARIOS = {
    # name: (bench argv, what one "operation" is, where the count is in the JSON)
    "watch": (["watch", "--streams", "10", "--put-total", "2000"], "event", "events"),
    "watch-1key": (["watch", "--streams", "10", "--watch-per-stream", "1000",
                    "--put-total", "100"], "event", "events"),
    # 100 puts/s to 10 streams x 100 watchers: event latency (p50) of streams that keep up
    "watch-latency-100": (["watch-latency", "--put-total", "300", "--watchers-per-stream",
                           "100"], "event", "ok"),
    "keepalive": (["--conns", "10", "--clients", "100", "--total", "200000",
                   "lease-keepalive"], "keep-alive", "ok"),
    "txn16": (["--conns", "10", "--clients", "100", "--total", "20000", "txn-put",
               "--txn-ops", "16", "--key-space-size", "100000"], "txn", "ok"),
    "range-10k-s": (["--conns", "1", "--clients", "1", "--total", "100", "range", "r/", "r0",
                     "--consistency", "s"], "range", "ok"),
    "range-10k-l": (["--conns", "1", "--clients", "1", "--total", "100", "range", "r/", "r0",
                     "--consistency", "l"], "range", "ok"),
}
GROUPS = {"range-10k": ["range-10k-s", "range-10k-l"]}


def cpu_ticks(pids) -> int:
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return t


def write_bytes(pids) -> int:
    """Bytes the processes caused to be written to storage (/proc/PID/io write_bytes)."""
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/io") as f:
                t += int(next(ln for ln in f if ln.startswith("write_bytes:")).split()[1])
        except (OSError, StopIteration, ValueError):
            pass
    return t



def kvcore(name: str, tree: str) -> Server:
    s = Server(name, [sys.executable, "-m", "kvcore"], "kvcore",
               env={"PYTHONPATH": tree})
    s.version = tree
    return s


def bench_run(server: Server, argv: list, timeout: float = 400) -> dict:
    host, port = server.endpoint
    cmd = [sys.executable, "-m", "bench", "--endpoints", f"{host}:{port}", "--no-progress",
           "--max-seconds", "300", "--json", "-"] + argv
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, PYTHONPATH=HERE))
    try:
        start = out.stdout.index("{\n")
        return json.loads(out.stdout[start:])
    except ValueError:
        raise RuntimeError(f"bench failed ({out.returncode}): {out.stderr[-500:]}") from None


def _kv_stub(server: Server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[
        ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    return ch, rpc_pb2_grpc.KVStub(ch)


def preload(server: Server, keys: list, value: bytes, per_txn: int = 100) -> None:
    ch, kv = _kv_stub(server)
    with ch:
        for i in range(0, len(keys), per_txn):
            kv.Txn(rpc_pb2.TxnRequest(success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value))
                for k in keys[i:i + per_txn]]), timeout=60)


def big_puts(server: Server, total: int = 100, size: int = 1 << 20) -> dict:
    """``total`` puts of a ``size``-byte value, one at a time (grpcio)."""
    ch, kv = _kv_stub(server)
    value = os.urandom(size)
    pids = server.pids()
    with ch:
        kv.Put(rpc_pb2.PutRequest(key=b"big/warm", value=value), timeout=60)
        t0, c0, w0 = time.monotonic(), cpu_ticks(pids), write_bytes(pids)
        lat = []
        for i in range(total):
            s = time.monotonic()
            kv.Put(rpc_pb2.PutRequest(key=b"big/%d" % (i % 10), value=value), timeout=60)
            lat.append(time.monotonic() - s)
        wall = time.monotonic() - t0
        cpu = (cpu_ticks(pids) - c0) / os.sysconf("SC_CLK_TCK")
        wrote = write_bytes(pids) - w0
    return {"rate": total / wall, "n": total, "errors": 0, "cpu_s": round(cpu, 2),
            "cpu_us_per_op": round(1e6 * cpu / total, 2),
            "disk_kib_per_op": round(wrote / total / 1024, 1),
            "p50_ms": round(1e3 * statistics.median(lat), 2)}


def measure(server: Server, scenario: str) -> dict:
    if scenario == "put-1mib":
        return big_puts(server)
    argv, unit, field = SCENARIOS[scenario]
    pids = server.pids()
    t0 = cpu_ticks(pids)
    res = bench_run(server, argv)
    cpu = (cpu_ticks(pids) - t0) / os.sysconf("SC_CLK_TCK")
    extra = res.get("extra") or {}
    if field == "events":
        n = extra.get("events received", 0)
        rate = extra.get("events/sec", 0.0)
    else:
        n = res.get("ok", 0)
        rate = res.get("rps", 0.0)
    # The load client shares the host: its CPU per operation (user+sys of the bench
    # process over the measured phase) is part of what the rate pays for.
    gen = (res.get("generator") or {}).get("cpu_s")
    return {"rate": rate, "n": n, "errors": res.get("error_count", 0),
            "cpu_s": round(cpu, 2), "cpu_us_per_op": round(1e6 * cpu / n, 2) if n else None,
            "client_cpu_us_per_op": round(1e6 * gen / n, 2) if n and gen is not None else None,
            "p50_ms": (res.get("latency") or {}).get("p50_ms")}


def restart_to_serving(server: Server) -> float:
    """SIGTERM, then start on the same data dir; seconds to the first answered Range."""
    os.killpg(server.proc.pid, signal.SIGTERM)
    server.proc.wait(60)
    t0 = time.monotonic()
    with open(server.log_path, "ab") as log:
        server.proc = subprocess.Popen(server.argv, stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(os.environ, **(server.env or {})),
                                       cwd=server.tmp, start_new_session=True)
    why = server.wait_ready(300)
    if why:
        raise RuntimeError(why)
    return time.monotonic() - t0


def load_distinct(server: Server, total: int, val_size: int, per_txn: int = 100,
                  threads: int = 4) -> None:
    """``total`` distinct 8-byte keys (k0000000, k0000001, ...), ``val_size``-byte values."""
    import concurrent.futures
    value = b"v" * val_size

    def part(lo: int, hi: int) -> None:
        keys = [b"k%07d" % i for i in range(lo, hi)]
        preload(server, keys, value, per_txn)

    step = -(-total // threads)
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        for f in [ex.submit(part, lo, min(total, lo + step)) for lo in range(0, total, step)]:
            f.result()
    ch, kv = _kv_stub(server)
    with ch:
        n = kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l", count_only=True,
                                          serializable=True), timeout=120).count
    if n != total:
        raise RuntimeError(f"{server.name}: {n} keys after loading {total}")


def million(servers: list, rounds: int, keys_total: int) -> dict:
    out = {}
    for srv in servers:
        srv.start()
        why = srv.wait_ready(60)
        if why:
            raise RuntimeError(f"{srv.name}: {why}")
        t0 = time.monotonic()
        # keys_total distinct keys (the bench's put cycles a pool of 131,072 bodies, so
        # it cannot): Txns of 100 puts (etcd's --max-txn-ops is 128), 4 at a time.
        load_distinct(srv, keys_total, 64)
        load_s = time.monotonic() - t0
        res = {"rps": keys_total / load_s}
        time.sleep(2)
        rss = rss_kib(srv.pids())
        mem = memory_kib(srv.pids())
        restarts = [restart_to_serving(srv) for _ in range(rounds)]
        time.sleep(2)
        mem_restart = memory_kib(srv.pids())
        out[srv.name] = {"load_s": round(load_s, 1), "load_rps": round(res.get("rps", 0)),
                         "rss_mib_after_load": round(rss / 1024, 1),
                         "pss_mib_after_load": round(mem["pss"] / 1024, 1),
                         "anon_mib_after_load": round(mem["anonymous"] / 1024, 1),
                         "rss_mib_after_restart": round(rss_kib(srv.pids()) / 1024, 1),
                         "pss_mib_after_restart": round(mem_restart["pss"] / 1024, 1),
                         "anon_mib_after_restart": round(mem_restart["anonymous"] / 1024, 1),
                         "processes": len(srv.pids()),
                         "restart_s": [round(x, 2) for x in restarts],
                         "restart_s_median": round(statistics.median(restarts), 2)}
        print(srv.name, out[srv.name], flush=True)
        srv.stop()
    return out


def start_ready(servers) -> None:
    """Start every server, then wait for each to serve (RuntimeError naming the one
    that cannot)."""
    for s in servers:
        s.start()
    for s in servers:
        why = s.wait_ready(60)
        if why:
            raise RuntimeError(f"{s.name}: {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS) + sorted(GROUPS) + ["put-1mib",
                                                                             "million"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--etcd-bin", default=ETCD351)
    ap.add_argument("--keys", type=int, default=1_000_000, help="million: keys to load")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()
    trees = [t.split("=", 1) for t in a.tree] or [["kvcore", HERE]]
    servers = [kvcore(n, os.path.abspath(d)) for n, d in trees]
    if not a.no_etcd:
        servers.append(etcd_server(a.etcd_bin))
    if a.scenario == "million":
        result = million(servers, a.rounds, a.keys)
        _dump(a, {"million": result})
        return
    scenarios = GROUPS.get(a.scenario, [a.scenario])
    runs: dict = {s.name: {sc: [] for sc in scenarios} for s in servers}
    try:
        start_ready(servers)
        if a.scenario == "range-10k":
            keys = [b"r/%05d" % i for i in range(10_000)]
            for s in servers:
                preload(s, keys, b"v" * 1024)
        for r in range(a.rounds):
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            for s in order:
                for sc in scenarios:
                    m = measure(s, sc)
                    runs[s.name][sc].append(m)
                    print(f"round {r + 1} {s.name:>12} {sc}: {m}", flush=True)
    finally:
        for s in servers:
            s.stop()
    summary = {}
    for name, by_sc in runs.items():
        for sc, ms in by_sc.items():
            summary.setdefault(sc, {})[name] = {
                "rate_median": round(statistics.median(m["rate"] for m in ms), 1),
                "rates": [round(m["rate"]) for m in ms],
                "cpu_us_per_op_median": statistics.median(m["cpu_us_per_op"] or 0 for m in ms),
                "cpu_us_per_op": [m["cpu_us_per_op"] for m in ms],
                "client_cpu_us_per_op": [m.get("client_cpu_us_per_op") for m in ms],
                "errors": sum(m["errors"] for m in ms)}
            if all("disk_kib_per_op" in m for m in ms):
                summary[sc][name]["disk_kib_per_op_median"] = statistics.median(
                    m["disk_kib_per_op"] for m in ms)
    for sc, by_name in summary.items():
        print(f"\n{sc} (rounds: {a.rounds})")
        for name, v in by_name.items():
            print(f"  {name:>12}: rate median {v['rate_median']:>10,.1f}/s {v['rates']}  "
                  f"server CPU/op median {v['cpu_us_per_op_median']} us {v['cpu_us_per_op']}"
                  f"  errors {v['errors']}"
                  + (f"  disk KiB/op median {v['disk_kib_per_op_median']}"
                     if "disk_kib_per_op_median" in v else ""))
            client = [c for c in v["client_cpu_us_per_op"] if c is not None]
            if client:
                print(f"  {'':>12}  client CPU/op median {statistics.median(client)} us "
                      f"{v['client_cpu_us_per_op']}")
    _dump(a, {"runs": runs, "summary": summary})


def _dump(a, data) -> None:
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
