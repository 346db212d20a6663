"""Human table, JSON and progress display for one run."""
from __future__ import annotations

import json
import sys
import time


class Progress:
    """Progress bar on stderr (rich, when stderr is a terminal)."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._rich = None
        self._last = 0.0

    def start(self, total: int):
        self.total = total
        self.t0 = time.monotonic()
        if not self.enabled:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP,
                                   TextColumn, TimeElapsedColumn)
        self._rich = RP(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        transient=True)
        self._rich.start()
        self._task = self._rich.add_task(self.label, total=total, rate="")

    def update(self, done: int):
        if not self.enabled:
            return
        el = time.monotonic() - self.t0
        rate = f"{done / el:,.0f}/s" if el > 0 else ""
        if self._rich is not None:
            self._rich.update(self._task, completed=done, rate=rate)
        elif time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            frac = done / self.total if self.total else 1
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} {rate}   ")
            sys.stderr.flush()

    def stop(self):
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.stop()
        else:
            sys.stderr.write("\r" + " " * 79 + "\r")
            sys.stderr.flush()


def fmt_ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def table(res: dict) -> str:
    """etcd benchmark-like summary."""
    lat = res.get("latency", {})
    g = res.get("generator", {})
    lines = [
        f"Summary ({res.get('label') or res.get('path')}):",
        f"  Endpoints:    {', '.join(res.get('endpoints', []))}",
        f"  Layout:       {res.get('conns')} conns, {res.get('clients')} clients, "
        f"{res.get('procs')} load process(es)",
        f"  Requests:     {res.get('ok', 0)} ok, {res.get('error_count', 0)} errors "
        f"of {res.get('total')}{'  (stopped by the time limit)' if res.get('hit_time_limit') else ''}",
        f"  Total:        {res.get('elapsed_s', 0):.4f} s",
        f"  Requests/sec: {res.get('rps', 0):,.1f}",
    ]
    if lat.get("count"):
        lines += [
            f"  Latency ms:   avg {fmt_ms(lat['avg_ms'])}  p50 {fmt_ms(lat['p50_ms'])}  "
            f"p90 {fmt_ms(lat['p90_ms'])}  p99 {fmt_ms(lat['p99_ms'])}  "
            f"p99.9 {fmt_ms(lat['p99.9_ms'])}  max {fmt_ms(lat['max_ms'])}",
            f"                min {fmt_ms(lat['min_ms'])}  stddev {fmt_ms(lat['stddev_ms'])}",
        ]
    if g:
        per = g.get("cpu_us_per_request")
        lines.append(f"  Generator CPU: {g['cpu_s']:.2f} s = {g['cpu_pct_of_one_core']:.0f}% of one core"
                     + (f", {per:.1f} µs/request" if per else ""))
    srv = res.get("server")
    if srv and srv.get("cpu_pct_of_one_core") is not None:
        lines.append(f"  Server CPU:   {srv['cpu_s']:.2f} s = {srv['cpu_pct_of_one_core']:.0f}% of one core")
    for k, v in (res.get("extra") or {}).items():
        lines.append(f"  {k}: {v}")
    if res.get("errors"):
        lines.append("  Errors:")
        for k, v in sorted(res["errors"].items(), key=lambda kv: -kv[1]):
            lines.append(f"    {v:8d}  {k}")
    return "\n".join(lines)


def to_json(res: dict, keep_histogram: bool = True) -> str:
    r = dict(res)
    if not keep_histogram:
        r.pop("histogram", None)
    return json.dumps(r, indent=2, sort_keys=False, default=str)
