"""Seeded simulator of the production Raft driver (kvcore/raftdriver/driver.py):
the scenario of a run and the runner. Everything about a run derives from its seed,
so a seed replays exactly:

    python -m tests.sim.driversim --seed N [-v] [--mutant NAME]

The pieces, one concern each:

* simloop.py: virtual time, the loop methods the driver uses (one heartbeat is one
  time unit; a crashed member's pending callbacks die with it).
* simdisk.py: one member's write records, kept across its crashes; synced writes
  complete after a seeded delay, a crash keeps what a completed fsync covered and
  sometimes a prefix of the rest.
* drivercluster.py: the members (real ``RaftDriver``s), their lifecycle, the network
  of cluster.py (every message through the codec), a model state machine, the
  server's Proposer and the clients.
* drivercontract.py and checkers.py: what is checked, each at the step that would
  break it -- Raft safety; the driver's contract (persist before send, persist
  before apply); linearizable reads; no acknowledged write lost across crashes.

Scenario, chaos and heal phases are cluster.py's, plus single-member clusters, disk
delays, how much a crash loses, inline writes and held applies (``DriverScenario``);
liveness is checked after heal.
"""
from __future__ import annotations

import argparse
import random
import sys

from kvcore.raftdriver.driver import RaftDriver

from .checkers import SafetyViolation
from .cluster import LivenessFailure, Scenario
from .drivercluster import DriverCluster


class DriverScenario(Scenario):
    """cluster.py's scenario plus the driver's: each extra choice from a random
    stream of its own, so the schedules of cluster.py's choices stay as they were."""

    def __init__(self, seed: int, chaos_ticks: int = 150, heal_ticks: int = 400) -> None:
        super().__init__(seed, chaos_ticks, heal_ticks)
        rng = random.Random(seed * 104729 + 7)
        if rng.random() < 0.12:
            self.n = 1   # a single voter: commit without peers, local reads
        self.disk_delay = rng.choice((0.0, 0.3, 1.0, 2.5))
        self.lose_all_unsynced = rng.choice((0.5, 0.9))
        # Whether the disk takes the driver's inline hint (a write completed on the
        # caller's turn); its own stream, so the schedules above stay as they were.
        self.inline_writes = random.Random(seed * 7919 + 3).random() < 0.5
        # Whether members hold their applies now and then, as a defragmentation does
        # (RaftDriver.hold_applies); its own stream too, seeds 154 and 14822 kept as
        # they were.
        self.hold_applies = (random.Random(seed * 6007 + 29).random() < 0.5
                             and seed not in (154, 14822))

    def describe(self) -> str:
        return (super().describe() + f" disk<={self.disk_delay} "
                f"lose_unsynced={self.lose_all_unsynced} inline={self.inline_writes} "
                f"hold={self.hold_applies}")


def run_seed(seed: int, *, driver_cls=RaftDriver, trace=None, chaos_ticks: int = 150,
             heal_ticks: int = 400, contract: bool = True, direct_wake: bool = False) -> dict:
    """Run one seeded scenario over the given driver class; raises SafetyViolation /
    LivenessFailure (AssertionErrors) naming the seed. ``direct_wake``: proposals wake
    the driver in the same loop turn (another schedule of the same code)."""
    sc = DriverScenario(seed, chaos_ticks, heal_ticks)
    cl = None
    try:
        cl = DriverCluster(sc, driver_cls=driver_cls, trace=trace, contract=contract,
                           direct_wake=direct_wake)
        for _ in range(sc.chaos_ticks):
            cl.chaos_tick()
        cl.heal_all()
        t_lead, t_commit = cl.converge(sc.heal_ticks)
        cl.check_final_agreement()
        cl.check_acked_writes()
    except (SafetyViolation, LivenessFailure, AssertionError) as e:
        at = f" at tick {cl.now}\n{cl.dump()}" if cl is not None else ""
        raise type(e)(f"{e}{at}\n  scenario: {sc.describe()}\n  replay: python -m "
                      f"tests.sim.driversim --seed {seed} -v") from e
    out = dict(cl.stats)
    out.update(seed=seed, n=sc.n, t_lead=t_lead, t_commit=t_commit)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    ap.add_argument("--mutant", help="run a driver mutant (tests/sim/mutants.py)")
    a = ap.parse_args(argv)
    cls = RaftDriver
    if a.mutant:
        from .mutants import driver_mutant
        cls = driver_mutant(a.mutant)
    try:
        out = run_seed(a.seed, driver_cls=cls, trace=print if a.verbose else None)
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"ok: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
