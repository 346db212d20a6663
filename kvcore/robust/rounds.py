"""One fault round: traffic on a fresh key prefix, a fault fired and undone, then the
round's history checked.

Each round writes under its own prefix, so its keys start absent and its history can
be checked alone (the linearizability search stays short however many rounds run).
Verdicts: "ok", "violation" (a checker found one), "unknown" (the linearizability
search ran past its step budget: neither proven nor refuted, never counted as ok).
"""
from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust import checkers, faults, linearizability, selftest
from kvcore.robust.cluster import Cluster
from kvcore.robust.traffic import SENTINEL, KVClient, LeaseClient, Watcher, replay


@dataclass
class RoundResult:
    round: int
    fault: str
    verdict: str
    ops: int = 0
    acknowledged: int = 0
    unknown_outcome: int = 0
    events: int = 0
    leases_revoked: int = 0      # lease holders' keys seen deleted (their lease ended)
    problems: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RoundPlan:
    clients: int = 4
    watchers: int = 2
    keys: int = 10
    warmup: float = 0.3
    hold: tuple = (0.3, 1.5)      # how long the fault lasts (uniform, seconds)
    settle: float = 0.5           # traffic after the fault is undone
    max_ops_per_client: int = 2000
    lease_clients: int = 2
    core_pause_extra: float = 4.0  # a stalled core outlasts a 3 s lease plus its extension
    lease_wait: float = 2.0       # at most, for the let-go leases to end before stopping


def _current_revision(cluster: Cluster, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in cluster.members:
            try:
                with grpc.insecure_channel(m.endpoint) as ch:
                    return rpc_pb2_grpc.KVStub(ch).Range(
                        rpc_pb2.RangeRequest(key=b"\0"), timeout=2).header.revision
            except grpc.RpcError:
                continue
        time.sleep(0.1)
    raise TimeoutError("no member answers a linearizable read")


def run_round(cluster: Cluster, index: int, fault: str, seed: int, plan: RoundPlan,
              out_dir: str, bug: str = "") -> RoundResult:
    """``bug``: a selftest.BUGS name planted in the records before they are checked."""
    t0 = time.monotonic()
    rng = random.Random(seed * 1_000_003 + index)
    prefix = f"/robust/{seed}/{index}/"
    keys = [f"{prefix}k{i}" for i in range(plan.keys)]
    endpoints = [m.endpoint for m in cluster.members]
    start_rev = _current_revision(cluster) + 1
    history: list = []
    lock, stop = threading.Lock(), threading.Event()
    traffic_stop = threading.Event()     # the writers and lease holders stop first
    threads = [KVClient(c, endpoints, keys, history, lock, traffic_stop, rng.randrange(1 << 30),
                        plan.max_ops_per_client) for c in range(plan.clients)]
    watchers = [Watcher(w, endpoints, prefix, start_rev, stop, rng.randrange(1 << 30))
                for w in range(plan.watchers)]
    # Every other lease holder lets go of a 1 s lease early in the round, so leases
    # also expire, under the fault, where the checker can see when.
    leases = [LeaseClient(c, endpoints, prefix, traffic_stop, rng.randrange(1 << 30),
                          **({} if c % 2 == 0 else
                             {"ttl": 1, "let_go": rng.uniform(0.05, plan.warmup)}))
              for c in range(plan.lease_clients)]
    for t in threads + watchers + leases:
        t.start()
    undo = None
    try:
        time.sleep(plan.warmup)
        undo = faults.inject(fault, cluster, rng)
        time.sleep(rng.uniform(*plan.hold) +
                   (plan.core_pause_extra if fault == "pause-leader-core" else 0))
    finally:
        if undo is not None:
            undo()
        time.sleep(plan.settle)
        traffic_stop.set()
        # the leases let go of: until a watcher saw each one end (bounded)
        ending = [lc.key for lc in leases if lc.let_go != math.inf]
        deadline = time.monotonic() + plan.lease_wait
        while time.monotonic() < deadline and not all(
                any(k in w.deleted_at for w in watchers) for k in ending):
            time.sleep(0.05)
        stop.set()
        for t in threads + watchers + leases:
            t.join(30)
    cluster.wait_healthy()
    events = replay(rng.choice(cluster.members).endpoint, prefix, start_rev)
    planted = selftest.BUGS[bug](history, watchers, events, leases) if bug else ""
    res = _check(index, fault, history, watchers, events, leases)
    if bug:
        res.problems.insert(0, f"planted {bug}: {planted or 'nothing to plant it on'}")
    res.seconds = round(time.monotonic() - t0, 2)
    if res.verdict != "ok":
        _keep(out_dir, res, history, watchers, events)
    return res


def _check(index, fault, history, watchers, events, leases=()) -> RoundResult:
    acked = [(o.key, o.arg) for o in history if o.kind == "put" and o.ret != math.inf]
    acked += [(o.key, o.arg[1]) for o in history
              if o.kind == "cas" and o.ret != math.inf and o.result]
    res = RoundResult(index, fault, "ok", ops=len(history), acknowledged=len(acked),
                      unknown_outcome=sum(1 for o in history if o.ret == math.inf),
                      events=len(events))
    problems = []
    try:
        bad = linearizability.check(history)
        problems += [f"history of key {k} is not linearizable" for k in bad]
    except linearizability.CheckerGaveUp as e:
        res.verdict = "unknown"
        problems.append(f"linearizability search gave up: {e}")
    problems += checkers.lost_writes(acked, events)
    problems += checkers.replay_problems(events)
    for w in watchers:
        rec = w.record
        for r in rec.responses:
            r.events = [e for e in r.events if not e.key.endswith(SENTINEL)]
        problems += checkers.watch_problems(rec, events)
    for lc in leases:
        seen = [w.deleted_at[lc.key] for w in watchers if lc.key in w.deleted_at]
        res.leases_revoked += bool(seen)
        problems += checkers.lease_problems(lc.key, lc.promises, min(seen, default=None))
    res.problems = problems
    if any(not p.startswith(("linearizability search gave up", "planted ")) for p in problems):
        res.verdict = "violation"
    return res


def _keep(out_dir: str, res: RoundResult, history, watchers, events) -> None:
    """A failed round's whole history, for reading after the fact."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"round-{res.round:04d}.json")
    with open(path, "w") as f:
        json.dump({"result": asdict(res),
                   "history": [asdict(o) | {"ret": None if o.ret == math.inf else o.ret}
                               for o in history],
                   "replay": [asdict(e) for e in events],
                   "watchers": [asdict(w.record) for w in watchers]}, f, default=str)
