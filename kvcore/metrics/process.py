"""process_* and os_fd_* for the whole member: the core and every worker process.

Read from /proc as prometheus' process collector does; CPU time, memory and open
descriptors are summed over the processes, the limits and start time are the
core's (the member started when the core did)."""
from __future__ import annotations

import os
import resource

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


_BTIME = _boot_time()


def _stat(pid: int):
    """-> (cpu seconds, vsize bytes, rss bytes, start time since epoch) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    utime, stime = int(fields[11]), int(fields[12])
    start = int(fields[19]) / _TICKS + _BTIME
    return (utime + stime) / _TICKS, int(fields[20]), int(fields[21]) * _PAGE, start


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _max_vm() -> float:
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return float("inf") if soft == resource.RLIM_INFINITY else float(soft)


def families(pids: list[int]):
    """pids[0] is the core."""
    cpu = vsize = rss = fds = 0
    start = 0.0
    for i, pid in enumerate(pids):
        st = _stat(pid)
        if st is None:
            continue
        cpu += st[0]
        vsize += st[1]
        rss += st[2]
        if i == 0:
            start = st[3]
        fds += _open_fds(pid)
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def gauge(name, doc, value):
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], value)
        return g
    c = CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.")
    c.add_metric([], cpu)
    return [
        c,
        gauge("process_max_fds", "Maximum number of open file descriptors.", fd_limit),
        gauge("process_open_fds", "Number of open file descriptors.", fds),
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss),
        gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", start),
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", vsize),
        gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.",
              _max_vm()),
        gauge("os_fd_limit", "The file descriptor limit.", fd_limit),
        gauge("os_fd_used", "The number of used file descriptors.", fds),
    ]
