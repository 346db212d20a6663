"""kvcoreutl: etcdutl's offline commands, with its flags, output and error messages.

  snapshot status FILE [-w simple|table|json]
  snapshot restore FILE [--data-dir D] [--wal-dir W] [--name N] [--initial-cluster C]
                        [--initial-cluster-token T] [--initial-advertise-peer-urls U]
                        [--skip-hash-check]
  defrag --data-dir D          hashkv --data-dir D [--rev R]
  migrate --etcd-data-dir SRC --data-dir D    (a stopped etcd 3.4/3.5 member's data)

Errors print "Error: ..." on stderr and exit 1 (etcdutl's ExitError); argument
errors exit 2 (ExitBadArgs)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from kvcore.utl import offline, snapshot


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kvcoreutl")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    snap = sub.add_parser("snapshot").add_subparsers(dest="snapcmd", required=True,
                                                      parser_class=_Parser)
    st = snap.add_parser("status")
    st.add_argument("file", nargs="*")
    st.add_argument("-w", "--write-out", default="simple")
    rs = snap.add_parser("restore")
    rs.add_argument("file", nargs="*")
    rs.add_argument("--data-dir", default="")
    rs.add_argument("--wal-dir", default="")
    rs.add_argument("--name", default="default")
    rs.add_argument("--initial-cluster", default="default=http://localhost:2380")
    rs.add_argument("--initial-cluster-token", default="etcd-cluster")
    rs.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380")
    rs.add_argument("--skip-hash-check", action="store_true")
    df = sub.add_parser("defrag")
    df.add_argument("--data-dir", required=True)
    hk = sub.add_parser("hashkv")
    hk.add_argument("--data-dir", required=True)
    hk.add_argument("--rev", type=int, default=0)
    mg = sub.add_parser("migrate")
    mg.add_argument("--etcd-data-dir", required=True)
    mg.add_argument("--data-dir", required=True)
    return p


def main(argv=None) -> int:
    try:
        a = _parser().parse_args(argv)
    except UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    try:
        if a.cmd == "snapshot" and a.snapcmd == "status":
            if len(a.file) != 1:
                raise UsageError("snapshot status requires exactly one argument")
            _print_status(snapshot.status(a.file[0]), a.write_out)
        elif a.cmd == "snapshot":
            if len(a.file) != 1:
                raise UsageError("snapshot restore requires exactly one argument")
            snapshot.restore(a.file[0], data_dir=a.data_dir, wal_dir=a.wal_dir, name=a.name,
                             initial_cluster=a.initial_cluster,
                             token=a.initial_cluster_token,
                             peer_urls=a.initial_advertise_peer_urls,
                             skip_hash_check=a.skip_hash_check)
        elif a.cmd == "defrag":
            try:
                offline.defrag(a.data_dir)
            except Exception as e:
                raise RuntimeError(f"Failed to defragment etcd data[{a.data_dir}] ({e})")
            print(f"finished defragmenting directory: {a.data_dir}")
        elif a.cmd == "hashkv":
            print(json.dumps(offline.hashkv(a.data_dir, a.rev)))
        elif a.cmd == "migrate":
            offline.migrate(a.etcd_data_dir, a.data_dir)
    except UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


def _human_bytes(n: int) -> str:
    """go-humanize's Bytes (SI units), as etcdutl prints sizes."""
    if n < 10:
        return f"{n} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = 0
    v = float(n)
    while v >= 1000 and e < len(units) - 1:
        v /= 1000
        e += 1
    v = int(v * 10 + 0.5) / 10
    return f"{v:.0f} {units[e]}" if v >= 10 else f"{v:.1f} {units[e]}"


def _print_status(st: dict, fmt: str) -> None:
    row = [f"{st['hash']:x}", str(st["revision"]), str(st["totalKey"]),
           _human_bytes(st["totalSize"])]
    if fmt == "json":
        print(json.dumps(st, separators=(",", ":")))
    elif fmt == "table":
        head = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
        w = [max(len(h), len(c)) + 2 for h, c in zip(head, row)]
        line = "+" + "+".join("-" * x for x in w) + "+"
        print(line)
        print("|" + "|".join(h.center(x) for h, x in zip(head, w)) + "|")
        print(line)
        print("|" + "|".join(c.rjust(x - 1) + " " for c, x in zip(row, w)) + "|")
        print(line)
    else:
        print(", ".join(row))
