"""The faults a round can fire. Each ``inject`` returns the function that undoes it.

- kill-*: kill -9 of the member's process group (its unsynced writes are lost; its
  acknowledged ones must not be); recovery restarts it on the same data dir.
- pause-*: SIGSTOP, then SIGCONT: a process that stops answering and comes back with
  stale timers, as a long GC pause or a stalled VM would.
- partition-*, leader-cannot-send/-hear: the proxy drops peer traffic in one or both
  directions; delay-leader delays what the leader sends.
- crash-point (kvcore only): a member restarted with a failpoint of its write path
  armed (kvcore/failpoints.py: before or after the WAL write, before or after the
  apply) to crash on the N-th pass; once it has crashed it is restarted clean.
- slow-disk (kvcore only): a member restarted with every WAL write and fsync
  delayed (the wal-fsync failpoint), then restarted without.
- defrag-leader: Maintenance.Defragment on the leader under the traffic. kvcore's
  members run with the copy slowed past two election timeouts (``SLOW_DEFRAG``, set by
  the CLI), so the round covers applies held while Raft goes on; etcd's defrag of a
  small file is quick.
"""
from __future__ import annotations

import random
import sys
import threading
import time

import grpc

from kvcore import failpoints
from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust.cluster import Cluster, Member

KINDS = ("kill-leader", "kill-follower", "kill-all", "pause-leader", "pause-follower",
         "pause-leader-core",
         "partition-leader", "partition-follower", "leader-cannot-send",
         "leader-cannot-hear", "delay-leader", "crash-point", "slow-disk", "defrag-leader",
         "none")
KVCORE_ONLY = ("crash-point", "slow-disk")   # they need kvcore's failpoints
SLOW_DEFRAG = "defrag-before=sleep(1200)"   # kvcore members' env when defrag-leader runs
CRASH_POINTS = ("wal-before-write", "wal-after-fsync", "apply-before", "apply-after")


def _leader_and_follower(cluster: Cluster, rng: random.Random) -> tuple[Member, Member]:
    try:
        leader = cluster.leader(timeout=5)
    except TimeoutError:
        leader = rng.choice(cluster.members)
    others = [m for m in cluster.members if m is not leader] or [leader]
    return leader, rng.choice(others)


def inject(kind: str, cluster: Cluster, rng: random.Random):
    leader, follower = _leader_and_follower(cluster, rng)
    if kind in ("kill-leader", "kill-follower"):
        victim = leader if kind == "kill-leader" else follower
        victim.kill9()
        return victim.start
    if kind == "kill-all":
        for m in cluster.members:
            m.kill9()

        def restart_all():
            for m in cluster.members:
                m.start()
        return restart_all
    if kind in ("pause-leader", "pause-follower"):
        victim = leader if kind == "pause-leader" else follower
        victim.pause()
        return victim.resume
    if kind == "pause-leader-core":      # the rounds hold it past a lease's TTL
        leader.pause_core()
        return leader.resume
    if kind in ("partition-leader", "partition-follower"):
        cluster.isolate(leader if kind == "partition-leader" else follower)
        return cluster.proxy.heal
    if kind == "leader-cannot-send":
        cluster.isolate(leader, inbound=False)
        return cluster.proxy.heal
    if kind == "leader-cannot-hear":
        cluster.isolate(leader, outbound=False)
        return cluster.proxy.heal
    if kind == "delay-leader":
        for o in cluster.members:
            if o is not leader:
                cluster.proxy.delay(leader.member_id, o.member_id, rng.uniform(0.05, 0.3))
        return cluster.proxy.heal
    if kind == "defrag-leader":
        return _defrag(leader)
    if kind in KVCORE_ONLY:
        return _restart_armed(kind, rng.choice((leader, follower)), rng)
    if kind == "none":
        return lambda: None
    raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")


def _defrag(member: Member):
    """Defragment ``member`` from a thread; the undo waits for the answer (bounded).
    An error other than the member being unreachable is reported on stderr."""
    done = threading.Event()

    def run():
        try:
            with grpc.insecure_channel(member.endpoint) as ch:
                rpc_pb2_grpc.MaintenanceStub(ch).Defragment(rpc_pb2.DefragmentRequest(),
                                                            timeout=30)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                print(f"kvcore-robust: defragment of {member.name} failed: {e.code()} "
                      f"{e.details()}", file=sys.stderr)
        finally:
            done.set()
    threading.Thread(target=run, daemon=True).start()
    return lambda: done.wait(35)


def _restart_armed(kind: str, victim: Member, rng: random.Random):
    """Restart ``victim`` with a failpoint armed; the returned undo waits (bounded)
    for a crash point to fire, then restarts it clean."""
    if kind == "crash-point":
        spec = f"{rng.choice(CRASH_POINTS)}=crash@{rng.randint(3, 40)}"
    else:
        spec = f"wal-fsync=sleep({rng.randint(50, 250)})"
    clean = victim.env
    victim.kill9()
    victim.env = dict(clean, **{failpoints.ENV: spec})
    victim.start()

    def undo():
        if kind == "crash-point":
            deadline = time.monotonic() + 10
            while victim.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        victim.kill9()         # it crashed (or the point was not reached in time)
        victim.env = clean
        victim.start()
    return undo
