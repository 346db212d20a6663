"""`compare`: kvcore beside real etcd on the same host, one command.

Starts each server (kvcore and every --etcd-bin) on a fresh temp data dir and free
ports, runs the scenario matrix (put / range linearizable / range serializable ×
connection layouts) with the servers alternating inside every round (the order
rotates each round), and writes report.md (Markdown table: medians, every round,
ratios, generator and server CPU), results.json and chart.png into --out-dir. A side
that cannot start or serve is named in the report and the rest still runs.
"""
from __future__ import annotations

import json
import os
import sys
import time

from . import etcdapi, hostinfo, runner, servers, stats, workloads
from .exitcodes import EXIT_OK, EXIT_RUN, EXIT_USAGE

SCENARIO_LABEL = {"put": "put", "range-l": "range (linearizable)",
                  "range-s": "range (serializable)"}


def parse_layouts(s: str) -> list[tuple[int, int]]:
    out = []
    for part in s.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            c, k = part.split("x")
            c, k = int(c), int(k)
        except ValueError:
            raise ValueError(f"bad layout {part!r}: expected CONNSxCLIENTS like 10x100") from None
        if c < 1 or k < c:
            raise ValueError(f"bad layout {part!r}: need 1 ≤ conns ≤ clients")
        out.append((c, k))
    if not out:
        raise ValueError("no layout given")
    return out


def parse_scenarios(s: str) -> list[str]:
    out = [x.strip() for x in s.split(",") if x.strip()]
    for x in out:
        if x not in SCENARIO_LABEL:
            raise ValueError(f"unknown scenario {x!r} (put, range-l, range-s)")
    if not out:
        raise ValueError("no scenario given")
    return out


def cell_total(a, conns: int, clients: int) -> int:
    if a.cell_total:
        return a.cell_total
    return 2000 if clients == 1 else 20000


def make_workload(scenario: str, key_size: int, val_size: int, total: int):
    if scenario == "put":
        def mk(proc, nprocs):
            return workloads.put_workload(key_size, val_size, total, True, total, proc=proc,
                                          nprocs=nprocs)
        return mk
    wl = workloads.range_workload("foo", consistency=scenario[-1])
    return lambda proc, nprocs: wl


def main(a) -> int:
    try:
        layouts = parse_layouts(a.layouts)
        scen = parse_scenarios(a.scenarios)
    except ValueError as e:
        print(f"kvcore-bench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    bins = a.etcd_bin or servers.default_etcd_bins()
    if not bins:
        print("kvcore-bench: error: no etcd binary found; pass --etcd-bin", file=sys.stderr)
        return EXIT_USAGE
    for b in bins:
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            print(f"kvcore-bench: error: --etcd-bin {b}: not an executable file", file=sys.stderr)
            return EXIT_USAGE
    out_dir = a.out_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "compare-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)

    candidates = []
    members = getattr(a, "members", 1) or 1

    def make(factory, name):
        if members == 1:
            return factory()
        return servers.Cluster(factory, members, f"{name} ×{members}")

    if not a.no_kvcore:
        candidates.append(make(lambda: servers.kvcore_server(a.kvcore_cmd, a.kvcore_workers),
                               "kvcore"))
    for b in bins:
        s = make(lambda b=b: servers.etcd_server(b), f"etcd {servers.etcd_version(b)}")
        if members == 1 and any(c.name == s.name for c in candidates):
            s.name = f"{s.name} ({b})"
        elif any(c.name == s.name for c in candidates):
            s.name = f"{s.name} ({b})"
        candidates.append(s)
    sides, missing = [], {}
    try:
        for s in candidates:
            print(f"starting {s.name} ...", file=sys.stderr)
            s.start()
            why = s.wait_ready(a.ready_timeout)
            if why:
                print(f"kvcore-bench: {s.name} cannot serve: {why}", file=sys.stderr)
                missing[s.name] = why
                s.stop()
            else:
                sides.append(s)
        if not sides:
            print("kvcore-bench: error: no server could serve; nothing to compare", file=sys.stderr)
            return EXIT_RUN
        for s in sides:
            etcdapi.run_sync(_seed(s.endpoint, a.val_size), timeout=30)
        host = hostinfo.describe(servers={s.name: " ".join(s.argv[:1]) for s in sides})
        cells = run_matrix(a, sides, scen, layouts)
    finally:
        for s in candidates:
            s.stop()
    names = [s.name for s in sides]
    payload = {"kind": "compare", "sides": names, "members": members, "missing": missing, "host": host,
               "rounds": a.rounds, "key_size": a.key_size, "val_size": a.val_size,
               "cells": cells}
    md = markdown(payload)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(payload, f, indent=2, default=str)
    chart_path = os.path.join(out_dir, "chart.png")
    chart_err = chart(payload, chart_path)
    print(md)
    print(f"\nwrote {out_dir}/report.md, results.json"
          + (", chart.png" if not chart_err else f" (no chart: {chart_err})"), file=sys.stderr)
    if a.json_out:
        text = json.dumps(payload, indent=2, default=str)
        if a.json_out == "-":
            print(text)
        else:
            with open(a.json_out, "w") as f:
                f.write(text + "\n")
    return EXIT_OK


async def _seed(endpoint, val_size):
    async with etcdapi.Session(*endpoint) as s:
        await s.put(b"foo", b"v" * val_size)


def run_matrix(a, sides, scen, layouts) -> list[dict]:
    cells = []
    for sc in scen:
        for conns, clients in layouts:
            total = cell_total(a, conns, clients)
            cell = {"scenario": sc, "conns": conns, "clients": clients, "total": total,
                    "runs": {s.name: [] for s in sides}}
            for r in range(a.rounds):
                k = r % len(sides)
                for s in sides[k:] + sides[:k]:
                    spec = runner.RunSpec(
                        endpoints=s.endpoints, conns=conns, clients=clients, total=total,
                        make_workload=make_workload(sc, a.key_size, a.val_size, total),
                        procs=runner.default_procs(conns, clients) if not a.procs_explicit
                        else min(a.procs, conns),
                        max_seconds=a.max_seconds, server_pids=s.pids(), label=sc)
                    try:
                        res = runner.run(spec)
                        res.pop("histogram", None)
                    except runner.RunFailed as e:
                        res = {"failed": str(e)}
                    cell["runs"][s.name].append(res)
                    rps = res.get("rps")
                    print(f"  {sc} {conns}x{clients} round {r + 1} {s.name}: "
                          + (f"{rps:,.0f} req/s, {res['error_count']} errors" if rps is not None
                             else f"failed: {res['failed']}"), file=sys.stderr)
            cell["median_rps"] = {n: _median_ok(runs, lambda x: x["rps"])
                                  for n, runs in cell["runs"].items()}
            cell["median_p99_ms"] = {n: _median_ok(runs, lambda x: x["latency"].get("p99_ms"))
                                     for n, runs in cell["runs"].items()}
            cell["median_gen_cpu"] = {n: _median_ok(runs, lambda x: x["generator"]["cpu_pct_of_one_core"])
                                      for n, runs in cell["runs"].items()}
            cell["median_srv_cpu"] = {n: _median_ok(runs, lambda x: x.get("server", {}).get("cpu_pct_of_one_core"))
                                      for n, runs in cell["runs"].items()}
            cells.append(cell)
    return cells


def _median_ok(runs, f):
    vals = []
    for r in runs:
        if "failed" in r or not r.get("ok"):
            continue
        try:
            v = f(r)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(v)
    return stats.median(vals)


def _fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def markdown(p: dict) -> str:
    sides = p["sides"]
    subject = sides[0]
    bases = sides[1:]
    lines = [f"# kvcore-bench compare: {', '.join(sides)}", ""]
    lines.append(hostinfo.markdown(p["host"]))
    if p.get("members", 1) > 1:
        lines.append(f"- Each server runs as a {p['members']}-member cluster on loopback; "
                     f"connections are spread over the members' client URLs; server CPU is "
                     f"the sum over the members.")
    lines.append(f"- Key {p['key_size']} B, value {p['val_size']} B; put uses sequential keys; "
                 f"range reads one key of {p['val_size']} B. {p['rounds']} rounds per cell, "
                 f"servers alternating within each round (order rotated every round); "
                 f"medians of the rounds, every round listed below.")
    for name, why in p.get("missing", {}).items():
        lines.append(f"- **{name} could not serve and is not in the table**: {why}")
    lines.append("")
    head = ["scenario", "conns/clients"] + [f"{s} req/s" for s in sides]
    head += [f"{subject} / {b}" for b in bases]
    head += [f"{s} p99 ms" for s in sides]
    head += [f"gen CPU % ({s})" for s in sides] + [f"server CPU % ({s})" for s in sides]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
    for c in p["cells"]:
        m = c["median_rps"]
        row = [SCENARIO_LABEL[c["scenario"]], f"{c['conns']}/{c['clients']}"]
        row += [_fmt(m.get(s)) for s in sides]
        for b in bases:
            row.append(f"{m[subject] / m[b]:.2f}" if m.get(subject) and m.get(b) else "—")
        row += [_fmt(c["median_p99_ms"].get(s), 2) for s in sides]
        row += [_fmt(c["median_gen_cpu"].get(s)) for s in sides]
        row += [_fmt(c["median_srv_cpu"].get(s)) for s in sides]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "All rounds (req/s; errors in brackets):", ""]
    lines.append("| scenario | conns/clients | requests per run | " + " | ".join(sides) + " |")
    lines.append("|---|---|---:|" + "---|" * len(sides))
    for c in p["cells"]:
        row = [SCENARIO_LABEL[c["scenario"]], f"{c['conns']}/{c['clients']}", str(c["total"])]
        for s in sides:
            parts = []
            for r in c["runs"][s]:
                if "failed" in r:
                    parts.append("failed")
                else:
                    parts.append(f"{r['rps']:,.0f}" + (f" [{r['error_count']}]" if r["error_count"] else ""))
            row.append(", ".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    errs = {}
    for c in p["cells"]:
        for s in sides:
            for r in c["runs"][s]:
                for k, v in (r.get("errors") or {}).items():
                    errs[(s, k)] = errs.get((s, k), 0) + v
                if "failed" in r:
                    errs[(s, r["failed"])] = errs.get((s, r["failed"]), 0) + 1
    if errs:
        lines += ["", "Errors:", ""]
        for (s, k), v in sorted(errs.items()):
            lines.append(f"- {s}: {v} × {k}")
    return "\n".join(lines)


def chart(p: dict, path: str) -> str | None:
    """Grouped bars of median req/s per cell (whiskers: min–max of the rounds) and
    p99 latency beneath. Returns None or why no chart was written."""
    import matplotlib   # imported here: slow to import, and only compare draws
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sides = p["sides"]
    cells = p["cells"]
    labels = [f"{SCENARIO_LABEL[c['scenario']]}\n{c['conns']}/{c['clients']}" for c in cells]
    n = len(sides)
    width = 0.8 / n
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(cells) + 2), 8), sharex=True)
    for i, s in enumerate(sides):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(cells))]
        med = [c["median_rps"].get(s) or 0 for c in cells]
        lo, hi = [], []
        for c, m in zip(cells, med):
            vals = [r["rps"] for r in c["runs"][s] if "rps" in r and r.get("ok")]
            lo.append(m - min(vals) if vals else 0)
            hi.append(max(vals) - m if vals else 0)
        ax1.bar(xs, med, width, label=s, yerr=[lo, hi], capsize=2)
        p99 = [c["median_p99_ms"].get(s) or 0 for c in cells]
        ax2.bar(xs, p99, width, label=s)
    ax1.set_ylabel("requests/s (median; whiskers min–max)")
    ax1.set_title("kvcore-bench compare — throughput")
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    ax2.set_ylabel("p99 latency ms (median)")
    ax2.set_yscale("log")
    ax2.grid(axis="y", alpha=0.3)
    ax2.set_xticks(range(len(cells)))
    ax2.set_xticklabels(labels, fontsize=8)
    h = p.get("host", {})
    fig.text(0.01, 0.005, f"{h.get('cpu_model')} · {h.get('cores')} cores · fdatasync median "
             f"{h.get('fsync', {}).get('median_ms')} ms · {h.get('time_utc')}", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
