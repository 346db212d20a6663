"""The subcommands. Each returns the process exit code."""
from __future__ import annotations

import functools
import sys

from . import client, etcdapi, report, runner, workloads
from .cli import EXIT_ALL_FAILED, EXIT_OK, EXIT_RUN, EXIT_USAGE


def err(msg: str):
    print(f"kvcore-bench: error: {msg}", file=sys.stderr)


def prepare(a, endpoints=None):
    """Probe the endpoints; returns (endpoints, token) or an exit code."""
    eps = endpoints or a.endpoint_list
    try:
        eps, token, _ = etcdapi.run_sync(
            etcdapi.prepare(eps, a.user, a.target_leader), timeout=60)
        return eps, token
    except client.EndpointError as e:
        err(str(e))
        return EXIT_USAGE
    except client.CallError as e:
        msg, code = etcdapi.explain_call_error(e, bool(a.user))
        err(msg)
        return code
    except TimeoutError:
        err("the endpoints did not answer the probe within 60 s")
        return EXIT_USAGE


def emit(a, res: dict) -> int:
    res.setdefault("subcommand", a.cmd)
    to_stdout = a.json_out == "-"
    print(report.table(res), file=sys.stderr if to_stdout else sys.stdout)
    if a.json_out:
        text = report.to_json(res)
        if to_stdout:
            print(text)
        else:
            with open(a.json_out, "w") as f:
                f.write(text + "\n")
    return exit_code_for(res, bool(a.user))


def exit_code_for(res: dict, user_given: bool) -> int:
    lost = [k for k in res.get("errors", {}) if k.startswith("not sent: every connection closed")]
    if lost:
        err(f"the server went away during the run; {res['errors'][lost[0]]} requests were not "
            f"sent ({lost[0].split('(', 1)[-1].rstrip(')')})")
        return EXIT_RUN
    if res.get("ok", 0) > 0:
        return EXIT_OK
    if res.get("errors"):
        kind, _ = max(res["errors"].items(), key=lambda kv: kv[1])
        status = next((c for c, n in client.h2.GRPC_STATUS_NAMES.items()
                       if kind.startswith(n + ":")), 2)
        msg, code = etcdapi.explain_call_error(
            client.CallError(status, kind.split(": ", 1)[-1]), user_given)
        err("no request succeeded; " + msg)
        return code if code != 4 else EXIT_ALL_FAILED
    return EXIT_RUN


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
    from . import streaming
    return _run_streaming(a, streaming.watch)


def cmd_watch_latency(a) -> int:
    from . import streaming
    return _run_streaming(a, streaming.watch_latency)


def cmd_lease_keepalive(a) -> int:
    from . import streaming
    return _run_streaming(a, streaming.lease_keepalive)


def cmd_compare(a) -> int:
    from . import compare
    return compare.main(a)


def cmd_ceiling(a) -> int:
    from . import validate
    return validate.ceiling(a)


def cmd_h2load_check(a) -> int:
    from . import validate
    return validate.h2load_check(a)
