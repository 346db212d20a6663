"""Runs a closed-loop unary load over several processes and collects the results.

Layout like etcd's benchmark: `conns` HTTP/2 connections, `clients` concurrent
requesters spread round-robin over them (so clients/conns streams in flight per
connection), `total` requests in all. Connections are split over `procs` load
processes (fork), each on its own uvloop; they connect, meet at a barrier, run, and
send back counts, an encoded HDR histogram and their own CPU time (getrusage).
Every run is bounded by `total` and by `max_seconds`.
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import uvloop

from kvcore.h2client import framing as h2

from . import client, stats


@dataclass
class RunSpec:
    endpoints: list            # [(host, port)]
    conns: int
    clients: int
    total: int
    make_workload: Callable    # (proc_index, nprocs) -> workload.Workload
    procs: int = 1
    rate: float = 0.0
    max_seconds: float = 120.0
    extra_headers: list = field(default_factory=list)   # e.g. [("token", "...")]
    server_pids: list = field(default_factory=list)
    progress: bool = True
    label: str = ""


def plan(spec: RunSpec) -> list[dict]:
    """Split connections, clients, requests and rate over the processes."""
    conns = max(1, spec.conns)
    clients = max(1, spec.clients)
    if clients < conns:
        conns = clients
    procs = max(1, min(spec.procs, conns))
    per_conn = [0] * conns
    for c in range(clients):
        per_conn[c % conns] += 1
    parts = []
    for p in range(procs):
        mine = list(range(p, conns, procs))
        parts.append({"proc": p, "conns": [(spec.endpoints[c % len(spec.endpoints)], per_conn[c])
                                           for c in mine]})
    weights = [sum(n for _, n in part["conns"]) for part in parts]
    left = spec.total
    for i, part in enumerate(parts):
        share = spec.total * weights[i] // clients if i < procs - 1 else left
        left -= share
        part["total"] = share
        part["rate"] = spec.rate * weights[i] / clients if spec.rate else 0.0
    return parts


def cpu_seconds_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime of a process (and its reaped children) from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _worker(spec: RunSpec, part: dict, nprocs: int, barrier, progress, conn_out):
    try:
        uvloop.install()
        res = asyncio.run(_worker_main(spec, part, nprocs, barrier, progress))
    except BaseException as e:  # report, never hang the parent
        res = {"proc": part["proc"], "fatal": f"{type(e).__name__}: {e}",
               "trace": traceback.format_exc()}
        try:
            barrier.abort()
        except Exception:
            pass
    conn_out.send(res)
    conn_out.close()


async def _worker_main(spec: RunSpec, part: dict, nprocs: int, barrier, progress):
    wl = spec.make_workload(part["proc"], nprocs)
    deadline = time.monotonic_ns() + int(spec.max_seconds * 1e9)
    load = client.Load(wl.bodies, part["total"], deadline, part["rate"])
    loop = asyncio.get_running_loop()
    load.done = loop.create_future()
    conns = []
    try:
        for (host, port), nclients in part["conns"]:
            hb = h2.request_header_block(wl.path, f"{host}:{port}", spec.extra_headers)
            c = await client.connect(host, port, load, hb)
            conns.append((c, nclients))
    except client.EndpointError as e:
        barrier.abort()
        for c, _ in conns:
            c.close()
        return {"proc": part["proc"], "fatal": str(e), "endpoint_error": True}
    await loop.run_in_executor(None, barrier.wait, 60)

    def tick():
        progress[part["proc"]] = load.ok + sum(load.errors.values())
        if not load.done.done():
            loop.call_later(0.1, tick)

    cpu0 = cpu_seconds_self()
    t0 = time.monotonic_ns()
    for c, n in conns:
        for _ in range(n):
            c.next_request(t0)
        c.flush()
    if load.issued == 0:
        load.check_done()
    tick()
    try:
        await asyncio.wait_for(asyncio.shield(load.done),
                               max(0.0, (deadline - time.monotonic_ns()) / 1e9) + 10.0)
    except asyncio.TimeoutError:
        pass
    t_end = load.t_last or time.monotonic_ns()
    cpu1 = cpu_seconds_self()
    if load.inflight:
        load.errors["no answer before the time limit"] += load.inflight
    progress[part["proc"]] = load.ok + sum(load.errors.values())
    for c, _ in conns:
        c.close()
    hist = stats.histogram_of(load.lat)
    return {"proc": part["proc"], "ok": load.ok, "errors": dict(load.errors),
            "t0": t0, "t_end": t_end, "cpu_s": cpu1 - cpu0, "hist": stats.encode(hist),
            "hit_time_limit": load.remaining > 0, "detail": wl.detail, "path": wl.path}


class RunFailed(Exception):
    pass


def run(spec: RunSpec, show=None) -> dict:
    """Run the load; returns the result dict (see report.result_fields)."""
    parts = plan(spec)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(parts) + 1)
    progress = ctx.Array("q", len(parts), lock=False)
    procs, pipes = [], []
    for part in parts:
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(spec, part, len(parts), barrier, progress, w),
                        daemon=True)
        p.start()
        w.close()
        procs.append(p)
        pipes.append(r)
    results = []
    try:
        try:
            barrier.wait(90)
            started = True
        except Exception:
            started = False
        srv0 = {pid: proc_cpu_seconds(pid) for pid in spec.server_pids}
        wall0 = time.monotonic()
        if started and show is not None:
            show.start(spec.total)
        pending = list(zip(procs, pipes))
        limit = time.monotonic() + spec.max_seconds + 30
        while pending and time.monotonic() < limit:
            for item in list(pending):
                p, r = item
                if r.poll(0.0):
                    results.append(r.recv())
                    pending.remove(item)
                elif not p.is_alive():
                    if r.poll(0.2):
                        continue
                    results.append({"proc": -1, "fatal": f"load process exited with {p.exitcode}"})
                    pending.remove(item)
            if show is not None and started:
                show.update(sum(progress))
            if pending:
                time.sleep(0.2)
        wall1 = time.monotonic()
        srv1 = {pid: proc_cpu_seconds(pid) for pid in spec.server_pids}
        if show is not None and started:
            show.update(sum(progress))
            show.stop()
        for p, _ in pending:
            results.append({"proc": -1, "fatal": "load process did not finish in time"})
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    fatal = [r for r in results if "fatal" in r]
    if fatal:
        msg = fatal[0]["fatal"]
        ex = RunFailed(msg)
        ex.endpoint_error = bool(fatal[0].get("endpoint_error"))
        ex.trace = fatal[0].get("trace")
        raise ex
    return assemble(spec, parts, results, srv0, srv1, wall1 - wall0)


def assemble(spec, parts, results, srv0, srv1, wall) -> dict:
    hist = stats.merge(r["hist"] for r in results)
    ok = sum(r["ok"] for r in results)
    errors: dict = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    t0 = min(r["t0"] for r in results)
    t_end = max(r["t_end"] for r in results)
    elapsed = max(1e-9, (t_end - t0) / 1e9)
    cpu = sum(r["cpu_s"] for r in results)
    out = {
        "label": spec.label,
        "endpoints": [f"{h}:{p}" for h, p in spec.endpoints],
        "path": results[0]["path"],
        "conns": spec.conns, "clients": spec.clients, "total": spec.total,
        "procs": len(parts), "rate": spec.rate or None,
        "ok": ok, "errors": errors, "error_count": sum(errors.values()),
        "elapsed_s": elapsed, "rps": ok / elapsed,
        "latency": stats.summary(hist),
        "generator": {"procs": len(parts), "cpu_s": cpu,
                      "cpu_pct_of_one_core": 100.0 * cpu / elapsed,
                      "cpu_us_per_request": 1e6 * cpu / ok if ok else None},
        "hit_time_limit": any(r["hit_time_limit"] for r in results),
        "workload": results[0]["detail"],
        "histogram": _text(stats.encode(hist)),
    }
    if spec.server_pids:
        srv_cpu = 0.0
        for pid in spec.server_pids:
            a, b = srv0.get(pid), srv1.get(pid)
            if a is not None and b is not None:
                srv_cpu += b - a
        out["server"] = {"pids": spec.server_pids, "cpu_s": srv_cpu,
                         "cpu_pct_of_one_core": 100.0 * srv_cpu / wall if wall else None}
    return out


def _text(blob) -> str:
    return blob.decode() if isinstance(blob, bytes) else blob


def default_procs(conns: int, clients: int) -> int:
    """Half the cores at most (the server being measured needs the rest; one process
    drives ~200,000 calls/s of a core here), never more than the connections."""
    ncpu = os.cpu_count() or 1
    return max(1, min(ncpu // 2, conns))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m bench")
