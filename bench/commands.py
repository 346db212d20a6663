"""The subcommands, ``cmd_<name>(args) -> exit code``; cli.py dispatches to them.

Imports go one way: cli -> commands -> (compare, validate, streaming, runs, ...) ->
exitcodes; nothing below imports cli or commands."""
from __future__ import annotations

import functools
import sys

from . import client, compare, etcdapi, report, runner, streaming, validate, workloads
from .exitcodes import EXIT_RUN, EXIT_USAGE, err
from .runs import emit, prepare


def run_unary(a, make_workload, label: str, rate: float = 0.0, server_pids=()) -> int:
    prep = prepare(a)
    if isinstance(prep, int):
        return prep
    eps, token = prep
    spec = runner.RunSpec(endpoints=eps, conns=a.conns, clients=a.clients, total=a.total,
                          make_workload=make_workload, procs=a.procs, rate=rate,
                          max_seconds=a.max_seconds,
                          extra_headers=[("token", token)] if token else [],
                          server_pids=list(server_pids), label=label)
    try:
        res = runner.run(spec, show=report.Progress(label, not a.no_progress))
    except runner.RunFailed as e:
        err(str(e))
        if getattr(e, "trace", None):
            print(e.trace, file=sys.stderr)
        return EXIT_USAGE if getattr(e, "endpoint_error", False) else EXIT_RUN
    return emit(a, res)


def cmd_put(a) -> int:
    mk = functools.partial(_put_wl, a.key_size, a.val_size, a.key_space_size,
                           a.sequential_keys, a.total)
    return run_unary(a, mk, "put", a.rate)


def _put_wl(key_size, val_size, ks, seq, total, proc, nprocs):
    return workloads.put_workload(key_size, val_size, ks, seq, total, proc=proc, nprocs=nprocs)


def cmd_range(a) -> int:
    wl = workloads.range_workload(a.key, a.end, a.consistency, a.limit, a.count_only)
    return run_unary(a, lambda proc, n: wl, f"range ({'linearizable' if a.consistency == 'l' else 'serializable'})",
                     a.rate)


def cmd_txn_put(a) -> int:
    if a.txn_ops > a.key_space_size:
        err(f"--txn-ops ({a.txn_ops}) must be ≤ --key-space-size ({a.key_space_size}): "
            f"etcd rejects a txn that puts one key twice")
        return EXIT_USAGE
    mk = functools.partial(_txn_wl, a.key_size, a.val_size, a.key_space_size, a.txn_ops, a.total)
    return run_unary(a, mk, "txn-put", a.rate)


def _txn_wl(key_size, val_size, ks, ops, total, proc, nprocs):
    return workloads.txn_put_workload(key_size, val_size, ks, ops, total, proc=proc, nprocs=nprocs)


def _run_streaming(a, fn) -> int:
    prep = prepare(a)
    if isinstance(prep, int):
        return prep
    eps, token = prep
    try:
        res = etcdapi.run_sync(fn(a, eps, token), timeout=a.max_seconds + 60)
    except (client.EndpointError, client.CallError) as e:
        err(str(e))
        return EXIT_RUN
    return emit(a, res)


def cmd_watch(a) -> int:
    return _run_streaming(a, streaming.watch)


def cmd_watch_latency(a) -> int:
    return _run_streaming(a, streaming.watch_latency)


def cmd_lease_keepalive(a) -> int:
    return _run_streaming(a, streaming.lease_keepalive)


def cmd_compare(a) -> int:
    return compare.main(a)


def cmd_ceiling(a) -> int:
    return validate.ceiling(a)


def cmd_h2load_check(a) -> int:
    return validate.h2load_check(a)
