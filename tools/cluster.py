#!/usr/bin/env python3
"""Start a local kvcore cluster on loopback, like etcd's Procfile.

    python3 tools/cluster.py                 # 3 members: infra1..3 on 2379/22379/32379
    python3 tools/cluster.py --members 5 --fresh --grpc-engine native

Members are named infra1..N, listen for clients on 127.0.0.1:{i}2379 (the first on
2379) and for peers on {i}2380, and keep data under --base-dir. Output of each member
goes to <base-dir>/infraN.log. Ctrl-C (or SIGTERM) stops them all.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time


def ports(i: int) -> tuple[int, int]:
    prefix = "" if i == 1 else str(i)
    return int(f"{prefix}2379"), int(f"{prefix}2380")


def member_argv(i: int, n: int, base: str, token: str, extra: list) -> list:
    client, peer = ports(i)
    cluster = ",".join(f"infra{j}=http://127.0.0.1:{ports(j)[1]}" for j in range(1, n + 1))
    return [sys.executable, "-m", "kvcore", "--name", f"infra{i}",
            "--data-dir", os.path.join(base, f"infra{i}.etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster-token", token, "--initial-cluster", cluster,
            "--initial-cluster-state", "new", *extra]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--base-dir", default="cluster-data")
    ap.add_argument("--token", default="kvcore-cluster-1")
    ap.add_argument("--fresh", action="store_true", help="wipe --base-dir first")
    args, extra = ap.parse_known_args()
    if args.fresh:
        shutil.rmtree(args.base_dir, ignore_errors=True)
    os.makedirs(args.base_dir, exist_ok=True)
    procs = []
    for i in range(1, args.members + 1):
        log = open(os.path.join(args.base_dir, f"infra{i}.log"), "a")
        procs.append(subprocess.Popen(member_argv(i, args.members, args.base_dir, args.token,
                                                  extra), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL))
    endpoints = ",".join(f"127.0.0.1:{ports(i)[0]}" for i in range(1, args.members + 1))
    print(f"started {args.members} members (logs in {args.base_dir}/infraN.log)")
    print(f"  etcdctl --endpoints {endpoints} endpoint status -w table")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    reported = set()
    try:
        while not stop:
            for i, p in enumerate(procs, 1):
                if p.poll() is not None and i not in reported:
                    reported.add(i)
                    print(f"infra{i} exited with code {p.returncode}", file=sys.stderr)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    main()
