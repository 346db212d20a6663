"""Checks that the tool measures the server, not itself.

- `ceiling`: against a trivial server (nghttpd in C, or bench.trivial_server), this
  tool and h2load alternately, 10 connections × 10 streams by default.
- `h2load-check`: against a real etcd, this tool and h2load alternately on the same
  unary calls with fixed bodies (put, linearizable range, serializable range).

Both print a Markdown table (medians of the rounds, every round listed, CPU of each
generator and of the server) and write JSON with the host's description.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import client, etcdapi, hostinfo, report, runner, servers, stats, trivial_server, workloads
from .exitcodes import EXIT_OK, EXIT_RUN, EXIT_USAGE, err
from .runner import proc_cpu_seconds
from .runs import prepare


def run_h2load(host: str, port: int, path: str, body: bytes, conns: int, streams: int,
               total: int, threads: int = 1, timeout: float = 120.0, headers=()) -> dict:
    """h2load with a fixed gRPC-framed body; returns rps, counts and h2load's CPU time."""
    if shutil.which("h2load") is None:
        raise FileNotFoundError("h2load not found (Debian package nghttp2-client)")
    with tempfile.NamedTemporaryFile(prefix="kvbench-body-", delete=False) as f:
        f.write(body)
        body_path = f.name
    out = tempfile.TemporaryFile()
    argv = ["h2load", "-n", str(total), "-c", str(conns), "-m", str(streams), "-t", str(threads),
            "-d", body_path, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for k, v in headers:
        argv += ["-H", f"{k}: {v}"]
    argv.append(f"http://{host}:{port}{path}")
    try:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    finally:
        os.unlink(body_path)
        out.close()
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored", text)
    if not m or not req:
        raise RuntimeError(f"h2load gave no result (exit {p.returncode}): {text[-500:]}")
    secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    cpu = ru.ru_utime + ru.ru_stime
    return {"rps": float(m.group(3)), "elapsed_s": secs, "succeeded": int(req.group(4)),
            "failed": int(req.group(5)) + int(req.group(6)), "cpu_s": cpu,
            "cpu_pct_of_one_core": 100 * cpu / secs if secs else None, "argv": argv}


def _ours(endpoint, wl, conns, clients, total, procs, server_pids, max_seconds=120.0) -> dict:
    spec = runner.RunSpec(endpoints=[endpoint], conns=conns, clients=clients, total=total,
                          make_workload=lambda p, n: wl, procs=procs, max_seconds=max_seconds,
                          server_pids=list(server_pids), label=wl.name)
    return runner.run(spec)


def _srv_cpu(pids, fn):
    before = {p: proc_cpu_seconds(p) for p in pids}
    t = time.monotonic()
    r = fn()
    el = time.monotonic() - t
    used = sum((proc_cpu_seconds(p) or 0) - (before[p] or 0) for p in pids)
    return r, (100 * used / el if el else None)


def _cell_table(rows: list[dict], a_name="kvcore-bench", b_name="h2load") -> str:
    out = [f"| scenario | {a_name} req/s (median) | {b_name} req/s (median) | ratio | "
           f"median of per-round ratios | {a_name} rounds | {b_name} rounds | {a_name} CPU % of a core | {b_name} CPU % | "
           f"server CPU % |",
           "|---|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r['scenario']} | {r['ours_median']:,.0f} | {r['h2load_median']:,.0f} | "
            f"{r['ratio']:.2f} | {r['paired_ratio_median'] or 0:.2f} | "
            f"{', '.join(f'{x:,.0f}' for x in r['ours_rounds'])} | "
            f"{', '.join(f'{x:,.0f}' for x in r['h2load_rounds'])} | "
            f"{stats.median(r['ours_cpu']):.0f} | {stats.median(r['h2load_cpu']):.0f} | "
            f"{stats.median([x for x in r['server_cpu'] if x is not None] or [0]):.0f} |")
    return "\n".join(out)


def _alternate(endpoint, scenarios, a, server_pids, token_headers=()) -> list[dict]:
    rows = []
    streams = max(1, a.clients // a.conns)
    for name, wl in scenarios:
        row = {"scenario": name, "ours_rounds": [], "h2load_rounds": [], "ours_cpu": [],
               "h2load_cpu": [], "server_cpu": [], "ours_latency": [], "errors": {}}
        for r in range(a.rounds):
            order = ("ours", "h2load") if r % 2 == 0 else ("h2load", "ours")
            for who in order:
                if who == "ours":
                    res, scpu = _srv_cpu(server_pids, lambda: _ours(
                        endpoint, wl, a.conns, a.clients, a.total, a.procs, (), a.max_seconds))
                    row["ours_rounds"].append(res["rps"])
                    row["ours_cpu"].append(res["generator"]["cpu_pct_of_one_core"])
                    row["ours_latency"].append(res["latency"])
                    for k, v in res["errors"].items():
                        row["errors"][k] = row["errors"].get(k, 0) + v
                else:
                    res, scpu = _srv_cpu(server_pids, lambda: run_h2load(
                        endpoint[0], endpoint[1], wl.path, wl.bodies[0], a.conns, streams,
                        a.total, 1, a.max_seconds, token_headers))
                    row["h2load_rounds"].append(res["rps"])
                    row["h2load_cpu"].append(res["cpu_pct_of_one_core"])
                    if res["failed"]:
                        row["errors"]["h2load failed"] = row["errors"].get("h2load failed", 0) + res["failed"]
                row["server_cpu"].append(scpu)
                print(f"  {name} round {r + 1} {who}: {res['rps']:,.0f} req/s", file=sys.stderr)
        row["ours_median"] = stats.median(row["ours_rounds"])
        row["h2load_median"] = stats.median(row["h2load_rounds"])
        row["ratio"] = row["ours_median"] / row["h2load_median"] if row["h2load_median"] else 0
        # each round's two runs are neighbours in time: their ratio cancels slow drift
        row["paired_ratios"] = [o / h for o, h in zip(row["ours_rounds"], row["h2load_rounds"]) if h]
        row["paired_ratio_median"] = stats.median(row["paired_ratios"])
        rows.append(row)
    return rows


def _write(a, payload: dict, md: str):
    print(md)
    if a.json_out:
        text = json.dumps(payload, indent=2, default=str)
        if a.json_out == "-":
            print(text)
        else:
            with open(a.json_out, "w") as f:
                f.write(text + "\n")


def ceiling(a) -> int:
    port = servers.free_port()
    msg = trivial_server.default_message(32)
    path = "/etcdserverpb.KV/Range"
    tmp = tempfile.mkdtemp(prefix="kvbench-trivial-")
    if a.server == "nghttpd":
        if shutil.which("nghttpd") is None:
            print("kvcore-bench: error: nghttpd not found (Debian package nghttp2-server); "
                  "use --server python", file=sys.stderr)
            return EXIT_USAGE
        argv = trivial_server.nghttpd_command(port, tmp, msg, [path])
    else:
        argv = [sys.executable, "-m", "bench.trivial_server", "--port", str(port),
                "--workers", str(a.server_workers)]
    srv = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        deadline = time.time() + 10
        while True:
            try:
                etcdapi.run_sync(_probe_trivial(port), timeout=3)
                break
            except Exception:
                if time.time() > deadline or srv.poll() is not None:
                    print("kvcore-bench: error: trivial server did not start", file=sys.stderr)
                    return EXIT_RUN
                time.sleep(0.1)
        pids = [srv.pid] + _children(srv.pid)
        wl = workloads.range_workload("foo", consistency="s")
        if a.no_h2load:
            rows = []
            for r in range(a.rounds):
                res, scpu = _srv_cpu(pids, lambda: _ours(("127.0.0.1", port), wl, a.conns,
                                                         a.clients, a.total, a.procs, ()))
                rows.append(res)
                print(report.table(res), file=sys.stderr)
            md = "rounds: " + ", ".join(f"{r['rps']:,.0f}" for r in rows)
            _write(a, {"rounds": rows}, md)
            return EXIT_OK
        rows = _alternate(("127.0.0.1", port), [(f"unary Range vs trivial {a.server}", wl)],
                          a, pids)
    finally:
        try:
            os.killpg(srv.pid, signal.SIGTERM)
        except OSError:
            pass
        srv.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    md = (f"Ceiling: {a.conns} conns × {a.clients // a.conns} streams, {a.total} calls per run, "
          f"{a.procs} load process(es), {a.rounds} rounds alternating\n\n" + _cell_table(rows))
    _write(a, {"kind": "ceiling", "server": a.server, "conns": a.conns, "clients": a.clients,
               "total": a.total, "procs": a.procs, "rows": rows,
               "host": hostinfo.describe()}, md)
    return EXIT_OK if rows[0]["errors"] == {} else EXIT_RUN


async def _probe_trivial(port):
    c = await client.connect("127.0.0.1", port, timeout=2)
    c.close()


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True, timeout=5).stdout
        return [int(x) for x in out.split()]
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []


def standard_scenarios(key_size: int, val_size: int, names):
    out = []
    for n in names:
        if n == "put":
            out.append(("put", workloads.put_workload(key_size, val_size, 1, False, 1)))
        elif n in ("range-l", "range-s"):
            out.append((n, workloads.range_workload("foo", consistency=n[-1])))
        else:
            raise ValueError(f"unknown scenario {n!r} (put, range-l, range-s)")
    return out


def h2load_check(a) -> int:
    try:
        scen = standard_scenarios(a.key_size, a.val_size, [s.strip() for s in a.scenarios.split(",")])
    except ValueError as e:
        err(str(e))
        return EXIT_USAGE
    srv = None
    try:
        if a.start_etcd:
            srv = servers.etcd_server(a.start_etcd).start()
            why = srv.wait_ready(30)
            if why:
                err(f"{a.start_etcd}: {why}")
                return EXIT_RUN
            endpoint, pids, name = srv.endpoint, srv.pids(), srv.name
        else:
            prep = prepare(a)
            if isinstance(prep, int):
                return prep
            endpoint, pids, name = prep[0][0], [], f"{prep[0][0][0]}:{prep[0][0][1]}"
        etcdapi.run_sync(_seed(endpoint, a.val_size), timeout=30)
        host = hostinfo.describe(servers={name: getattr(srv, "version", "")} if srv else None)
        rows = _alternate(endpoint, scen, a, pids)
    finally:
        if srv is not None:
            srv.stop()
    md = (f"Agreement with h2load against {name}: {a.conns} conns / {a.clients} clients "
          f"(h2load -c {a.conns} -m {a.clients // a.conns}), {a.total} calls per run, key "
          f"{a.key_size} B, value {a.val_size} B, {a.rounds} rounds alternating, "
          f"{a.procs} load process(es)\n\n" + _cell_table(rows))
    _write(a, {"kind": "h2load-check", "server": name, "conns": a.conns, "clients": a.clients,
               "total": a.total, "procs": a.procs, "rows": rows, "host": host}, md)
    bad = [r for r in rows if r["errors"]]
    return EXIT_RUN if bad else EXIT_OK


async def _seed(endpoint, val_size):
    async with etcdapi.Session(*endpoint) as s:
        await s.put(b"foo", b"v" * val_size)
