"""Description of the host a result was measured on (kept with every saved result)."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def fsync_latency(directory: str | None = None, n: int = 50, size: int = 4096) -> dict:
    """Median/p99/max of `n` write(4 KiB)+fdatasync on `directory`'s file system, in ms —
    the cost that bounds a WAL-based store's write path."""
    d = tempfile.mkdtemp(prefix="kvbench-fsync-", dir=directory)
    path = os.path.join(d, "probe")
    lat = []
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            buf = os.urandom(size)
            for _ in range(n):
                t = time.perf_counter()
                os.write(fd, buf)
                os.fdatasync(fd)
                lat.append((time.perf_counter() - t) * 1e3)
        finally:
            os.close(fd)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(d)
    lat.sort()
    return {"dir": directory or tempfile.gettempdir(), "samples": n,
            "median_ms": round(statistics.median(lat), 4),
            "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 4),
            "max_ms": round(lat[-1], 4)}


def describe(fsync_dir: str | None = None, servers: dict | None = None) -> dict:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    git = None
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": mem_total_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
        "fsync": fsync_latency(fsync_dir),
        "git_commit": git,
        "servers": servers or {},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(h: dict) -> str:
    f = h.get("fsync", {})
    lines = [
        f"- Host: {h.get('cpu_model')}, {h.get('cores')} cores, {h.get('mem_gib')} GiB, "
        f"Linux {h.get('kernel')}, Python {h.get('python')}",
        f"- fdatasync of 4 KiB on {f.get('dir')}: median {f.get('median_ms')} ms, "
        f"p99 {f.get('p99_ms')} ms, max {f.get('max_ms')} ms ({f.get('samples')} samples)",
        f"- Load average at start: {h.get('loadavg_at_start')}; measured at {h.get('time_utc')}"
        f" on commit {h.get('git_commit')}",
    ]
    for name, v in (h.get("servers") or {}).items():
        lines.append(f"- {name}: {v}")
    return "\n".join(lines)
