"""Show that the tests bite: plant known Raft bugs one at a time (in a temporary copy of
the code, never in the working tree) and report which tests catch each.

    python -m tests.sim.mutants [--seeds 1500] [--only NAME] [--no-contract]

For every mutant: the unit tests that fail, and the first simulator seeds that fail
(with the first failure message).  The send-before-persist mutant is a driver bug, run
through the Raft simulator's broken-driver switch.  ``DRIVER_MUTANTS`` break the
production driver's contract (kvcore/raftdriver/driver.py) and run through the driver
simulator (tests/sim/driversim.py); tests/sim/test_driver_sim.py asserts each is caught.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (file, original text, mutated text, what it breaks)
MUTANTS = {
    "commit-prev-term": (
        "kvcore/raft/log.py",
        "if max_index > self.committed and self.zero_term_on_compacted(max_index) == term:",
        "if max_index > self.committed:",
        "commit by counting replicas of a previous term's entry (5.4.2)"),
    "vote-no-uptodate-check": (
        "kvcore/raft/raft.py",
        "if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):",
        "if can_vote:",
        "grant votes without the election restriction (5.4.1)"),
    "no-truncate-conflict": (
        "kvcore/raft/log.py",
        "            if not self.match_term(e.index, e.term):\n                return e.index\n"
        "        return 0",
        "            pass\n        return 0",
        "follower keeps conflicting entries instead of truncating (5.3)"),
    "readindex-no-quorum": (
        "kvcore/raft/raft.py",
        "        if r.trk.is_singleton():\n            # A one-voter",
        "        if True:\n            # A one-voter",
        "ReadIndex answered without a quorum heartbeat round (8)"),
    "heartbeat-commit-no-min": (
        "kvcore/raft/raft.py",
        "commit = min(pr.match, self.raft_log.committed)",
        "commit = self.raft_log.committed",
        "heartbeat tells a follower to commit past what it has"),
}

# Driver mutants: the production driver (kvcore/raftdriver/driver.py) with one rule of
# its contract broken, run by the driver simulator (tests/sim/driversim.py).
DRIVER = "kvcore/raftdriver/driver.py"
DRIVER_MUTANTS = {
    "apply-before-persist": (
        DRIVER,
        "                    sync = self._must_sync(rd)\n",
        "                    sync = self._must_sync(rd)\n"
        "                    if rd.committed_entries and rd.snapshot is None:\n"
        "                        self._apply_committed(None, rd.committed_entries)\n",
        "a Ready's committed entries are applied before the Ready is written"),
    "read-before-applied": (
        DRIVER,
        "                self._reads_applied.append((rs.index, futs))",
        "                self._reads_applied.append((0, futs))",
        "a ReadIndex read is answered before the applied index reaches the read index"),
    "read-at-commit": (
        DRIVER,
        "            if index <= self.applied:",
        "            if index <= self.committed:",
        "a ReadIndex read is answered once committed, before the (deferred) apply"),
    "lost-must-sync": (
        DRIVER,
        "        return hs is not None and (prev is None or hs.term != prev.term or "
        "hs.vote != prev.vote)",
        "        return False",
        "a new term or vote is written without fsync (MustSync ignored)"),
    "send-before-write": (
        DRIVER,
        "                    sync = self._must_sync(rd)\n",
        "                    sync = self._must_sync(rd)\n"
        "                    if rd.messages and self._send is not None:\n"
        "                        self._send(rd.messages)\n"
        "                        rd.messages = []\n",
        "a Ready's messages leave before the Ready is written"),
    "own-count-before-write": (
        DRIVER,
        "                    sync = self._must_sync(rd)\n",
        "                    sync = self._must_sync(rd)\n"
        "                    if rd.entries:\n"
        "                        node.raft.own_persisted(rd.entries[-1].index, "
        "rd.entries[-1].term)\n",
        "a leader counts its own entries toward the quorum before writing them"),
    "apply-while-staging": (
        DRIVER,
        "            self._staged = self._stage(rd.committed_entries)",
        "            self._apply_committed(None, rd.committed_entries)",
        "a lone write's entries are applied (made visible) before their sync"),
    "confirm-without-quorum": (
        DRIVER,
        "        self._confirm_only.add(fut)\n",
        "        fut.set_result(None)\n        return fut\n",
        "a leadership round is confirmed without a quorum's answer"),
}


def driver_mutant(name: str):
    """The RaftDriver class of driver.py with mutant ``name`` planted, built in memory
    (the working tree is not touched)."""
    path, old, new, _ = DRIVER_MUTANTS[name]
    src = open(os.path.join(ROOT, path)).read()
    assert src.count(old) == 1, f"driver mutant {name} no longer applies"
    mod = types.ModuleType(f"kvcore.raftdriver._mutant_{name.replace('-', '_')}")
    exec(compile(src.replace(old, new), f"{path} [mutant {name}]", "exec"), mod.__dict__)
    return mod.RaftDriver


def first_failing_driver_seeds(name: str, seeds: int, stop_after: int = 1,
                               contract: bool = True) -> tuple:
    """-> (failing seeds, seeds run, first failure message) for a driver mutant;
    ``contract=False`` leaves only the end-to-end checks (safety, reads, acks)."""
    from tests.sim.driversim import run_seed as run_driver_seed
    cls = driver_mutant(name)
    found, first, n = [], "", 0
    for seed in range(seeds):
        n += 1
        try:
            run_driver_seed(seed, driver_cls=cls, contract=contract)
        except AssertionError as e:
            found.append(seed)
            first = first or str(e).splitlines()[0][:200]
            if len(found) >= stop_after:
                break
    return found, n, first


SIM_CODE = """
import sys
from tests.sim.cluster import run_seed
found = []
first = ""
n = 0
for s in range({seeds}):
    n += 1
    try:
        run_seed(s, bug_send_before_persist={driver})
    except AssertionError as e:
        found.append(s)
        if not first:
            first = str(e).splitlines()[0][:200]
        if len(found) >= 5:
            break
print(found, n, first)
"""


def copy_tree(dst: str) -> None:
    for rel in ("kvcore/raft", "tests/unit/raft", "tests/sim"):
        shutil.copytree(os.path.join(ROOT, rel), os.path.join(dst, rel),
                        ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("kvcore/__init__.py", "tests/__init__.py", "tests/unit/__init__.py"):
        open(os.path.join(dst, rel), "w").close()


def run_mutant(name: str, seeds: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        copy_tree(d)
        driver = name == "send-before-persist"
        if not driver:
            path, old, new, _ = MUTANTS[name]
            p = os.path.join(d, path)
            src = open(p).read()
            assert src.count(old) == 1, f"mutant {name} no longer applies"
            open(p, "w").write(src.replace(old, new))
        env = dict(os.environ, PYTHONPATH=d)
        unit = []
        if not driver:
            r = subprocess.run([sys.executable, "-m", "pytest", "tests/unit/raft", "-q",
                                "-p", "no:cacheprovider", "--timeout", "60"], cwd=d,
                               env=env, capture_output=True, text=True)
            unit = [line.split(" ")[1] for line in r.stdout.splitlines()
                    if line.startswith("FAILED")]
        r = subprocess.run([sys.executable, "-c", SIM_CODE.format(seeds=seeds,
                                                                  driver=driver)],
                           cwd=d, env=env, capture_output=True, text=True)
        out = r.stdout.strip().splitlines()
        return {"unit": unit, "sim": out[-1] if out else r.stderr[-300:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=1500)
    ap.add_argument("--only")
    ap.add_argument("--no-contract", action="store_true",
                    help="driver mutants: only the end-to-end checks (no contract checks)")
    a = ap.parse_args(argv)
    names = list(MUTANTS) + ["send-before-persist"] + list(DRIVER_MUTANTS)
    if a.only:
        names = [a.only]
    missed = 0
    for name in names:
        if name in DRIVER_MUTANTS:
            found, n, first = first_failing_driver_seeds(name, a.seeds, 5,
                                                         contract=not a.no_contract)
            print(f"== driver {name}: {DRIVER_MUTANTS[name][3]}")
            print(f"   driver simulator [failing seeds] seeds-run first-message: "
                  f"{found} {n} {first}")
            missed += not found
            continue
        res = run_mutant(name, a.seeds)
        print(f"== {name}: {MUTANTS[name][3] if name in MUTANTS else 'driver sends before persisting'}")
        print(f"   unit tests failing ({len(res['unit'])}):")
        for t in res["unit"]:
            print(f"     {t}")
        print(f"   simulator [failing seeds] seeds-run first-message: {res['sim']}")
        if not res["unit"] and res["sim"].startswith("[]"):
            missed += 1
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
