"""Command line: etcd benchmark's subcommands and flags, plus compare/ceiling/h2load-check."""
from __future__ import annotations

import argparse
import sys

from . import __version__, commands
from .client import parse_endpoint
from .runner import default_procs


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {v}")
    return v


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {v}")
    return v


def consistency(s: str) -> str:
    s = s.lower()
    if s not in ("l", "s"):
        raise argparse.ArgumentTypeError("consistency must be l (linearizable) or s (serializable)")
    return s


def _globals(p: argparse.ArgumentParser, suppress: bool):
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--endpoints", default=d("127.0.0.1:2379"),
                   help="comma-separated gRPC endpoints, host:port or http://host:port "
                        "(default 127.0.0.1:2379)")
    p.add_argument("--conns", type=positive_int, default=d(1), help="HTTP/2 connections (default 1)")
    p.add_argument("--clients", type=positive_int, default=d(1),
                   help="concurrent requesters, spread over the connections (default 1)")
    p.add_argument("--total", type=positive_int, default=d(10000), help="requests in all (default 10000)")
    p.add_argument("--target-leader", action="store_true", default=d(False),
                   help="send everything to the leader among --endpoints")
    p.add_argument("--user", default=d(None), help="NAME:PASSWORD for servers with auth enabled")
    p.add_argument("--procs", type=positive_int, default=d(None),
                   help="load processes (default: half the cores, at least 1, at most --conns)")
    p.add_argument("--max-seconds", type=nonneg_float, default=d(120.0),
                   help="time limit of one run; it stops there even if --total is not reached "
                        "(default 120)")
    p.add_argument("--json", dest="json_out", metavar="FILE", default=d(None),
                   help="also write the result as JSON to FILE ('-' = stdout; the table then "
                        "goes to stderr)")
    p.add_argument("--no-progress", action="store_true", default=d(False), help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="kvcore-bench",
        description="etcd-benchmark-style load tool for any etcd v3 gRPC endpoint, "
                    "with a side-by-side mode against real etcd.")
    ap.add_argument("--version", action="version", version=f"kvcore-bench {__version__}")
    _globals(ap, suppress=False)
    g = argparse.ArgumentParser(add_help=False)
    _globals(g, suppress=True)
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("put", parents=[g], help="benchmark Put")
    p.add_argument("--key-size", type=positive_int, default=8, help="key bytes (default 8)")
    p.add_argument("--val-size", type=positive_int, default=8, help="value bytes (default 8)")
    p.add_argument("--sequential-keys", action="store_true", help="keys 0,1,2,... instead of random")
    p.add_argument("--key-space-size", type=positive_int, default=1, help="distinct keys (default 1)")
    p.add_argument("--rate", type=nonneg_float, default=0.0, help="max requests/s in all (0 = no limit)")

    p = sub.add_parser("range", parents=[g], help="benchmark Range of KEY [END]")
    p.add_argument("key")
    p.add_argument("end", nargs="?")
    p.add_argument("--consistency", type=consistency, default="l",
                   help="l (linearizable, default) or s (serializable)")
    p.add_argument("--limit", type=int, default=0, help="Range limit (0 = none)")
    p.add_argument("--count-only", action="store_true")
    p.add_argument("--rate", type=nonneg_float, default=0.0, help="max requests/s (0 = no limit)")

    p = sub.add_parser("txn-put", parents=[g], help="benchmark Txn with puts")
    p.add_argument("--key-size", type=positive_int, default=8)
    p.add_argument("--val-size", type=positive_int, default=8)
    p.add_argument("--key-space-size", type=positive_int, default=1)
    p.add_argument("--txn-ops", type=positive_int, default=1, help="puts per Txn (default 1)")
    p.add_argument("--rate", type=nonneg_float, default=0.0)

    p = sub.add_parser("watch", parents=[g], help="benchmark watcher creation and event delivery")
    p.add_argument("--streams", type=positive_int, default=10, help="watch streams (default 10)")
    p.add_argument("--watch-per-stream", type=positive_int, default=100,
                   help="watchers per stream (default 100)")
    p.add_argument("--watched-key-total", type=positive_int, default=1,
                   help="distinct keys being watched (default 1)")
    p.add_argument("--put-total", type=int, default=100, help="puts to the watched keys (default 100)")
    p.add_argument("--put-rate", type=nonneg_float, default=0.0, help="puts per second (0 = no limit)")
    p.add_argument("--key-size", type=positive_int, default=32)
    p.add_argument("--val-size", type=positive_int, default=32)

    p = sub.add_parser("watch-latency", parents=[g],
                       help="latency from a Put to each watcher receiving its event")
    p.add_argument("--streams", type=positive_int, default=10)
    p.add_argument("--watchers-per-stream", type=positive_int, default=10)
    p.add_argument("--put-total", type=positive_int, default=1000)
    p.add_argument("--put-rate", type=nonneg_float, default=100.0,
                   help="puts per second (default 100)")
    p.add_argument("--key-size", type=positive_int, default=32)
    p.add_argument("--val-size", type=positive_int, default=32)

    p = sub.add_parser("lease-keepalive", parents=[g],
                       help="benchmark LeaseKeepAlive round trips (one lease per client)")
    p.add_argument("--ttl", type=positive_int, default=30, help="lease TTL seconds (default 30)")

    p = sub.add_parser("compare", parents=[g],
                       help="start real etcd and kvcore, run the standard matrix alternating "
                            "A/B, write a Markdown table and a PNG chart")
    p.add_argument("--etcd-bin", action="append", default=None,
                   help="etcd binary to compare with; repeat for several (the first is the "
                        "main baseline). Default: /opt/etcd351/bin/etcd when present, else "
                        "etcd on PATH, plus Debian's /usr/bin/etcd as a second baseline")
    p.add_argument("--kvcore-cmd", default=f"{sys.executable} -m kvcore",
                   help="command that starts kvcore (etcd's flags are appended)")
    p.add_argument("--no-kvcore", action="store_true", help="compare etcd binaries only")
    p.add_argument("--kvcore-workers", type=positive_int, default=None, help="kvcore --workers N")
    p.add_argument("--rounds", type=positive_int, default=3, help="rounds per cell (default 3)")
    p.add_argument("--members", type=positive_int, default=1,
                   help="members per server: 1, or 3 for the cluster variant (default 1)")
    p.add_argument("--scenarios", default="put,range-l,range-s",
                   help="comma list of put, range-l, range-s (default all)")
    p.add_argument("--layouts", default="1x1,10x100,100x1000",
                   help="comma list of CONNSxCLIENTS (default 1x1,10x100,100x1000)")
    p.add_argument("--cell-total", type=positive_int, default=None,
                   help="requests per run (default: 2000 for 1x1, 20000 otherwise)")
    p.add_argument("--key-size", type=positive_int, default=8)
    p.add_argument("--val-size", type=positive_int, default=256)
    p.add_argument("--out-dir", default=None,
                   help="where to write the report (default bench/results/compare-DATE)")
    p.add_argument("--ready-timeout", type=nonneg_float, default=30.0,
                   help="seconds to wait for each server to serve (default 30)")

    p = sub.add_parser("ceiling", parents=[g],
                       help="the tool's own ceiling against a trivial server, next to h2load")
    p.add_argument("--server", choices=("python", "nghttpd"), default="nghttpd",
                   help="trivial server: nghttpd (C) or this package's uvloop server")
    p.add_argument("--server-workers", type=positive_int, default=1)
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--no-h2load", action="store_true")

    p = sub.add_parser("h2load-check", parents=[g],
                       help="run this tool and h2load alternately on the same fixed unary calls "
                            "and report their agreement")
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--scenarios", default="put,range-l,range-s")
    p.add_argument("--key-size", type=positive_int, default=8)
    p.add_argument("--val-size", type=positive_int, default=256)
    p.add_argument("--start-etcd", default=None, metavar="BIN",
                   help="start this etcd binary on a fresh data dir and free ports instead of "
                        "using --endpoints")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        a.endpoint_list = [parse_endpoint(e) for e in a.endpoints.split(",") if e.strip()]
        if not a.endpoint_list:
            raise ValueError("no endpoint given")
    except ValueError as e:
        ap.error(f"--endpoints: {e}")
    if a.user is not None and ":" not in a.user:
        ap.error("--user must be NAME:PASSWORD")
    a.procs_explicit = a.procs is not None
    if a.procs is None:
        a.procs = default_procs(a.conns, a.clients)
    if a.clients < a.conns:
        ap.error(f"--clients ({a.clients}) must be ≥ --conns ({a.conns})")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        return getattr(commands, "cmd_" + a.cmd.replace("-", "_"))(a)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
