"""kvcore-robust end to end: fault rounds against a real 3-member kvcore and a real
etcd 3.5.1, and the checkers shown to fail on bugs planted in a real round's records.

CI runs the short mix (20 rounds on kvcore, every fault kind); the slow-marked test is
the long run (KVCORE_ROBUST_ROUNDS, default 500) the README quotes.
"""
import json
import os
import subprocess
import sys

import pytest

ETCD351 = "/opt/etcd351/bin/etcd"


def _run(tmp_path, *args, timeout=600):
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "kvcore.robust", "--out", str(out), *args],
                       capture_output=True, text=True, timeout=timeout)
    with open(out / "report.json") as f:
        return p, json.load(f)


def test_kvcore_passes_a_mix_of_fault_rounds(tmp_path):
    p, rep = _run(tmp_path, "--binary", "kvcore", "--members", "3", "--rounds", "20",
                  "--seed", "11")
    print(p.stdout)
    s = rep["summary"]
    assert p.returncode == 0, p.stdout + p.stderr
    assert (s["rounds"], s["ok"], s["violation"], s["unknown"]) == (20, 20, 0, 0)
    assert s["acknowledged_writes"] > 500, "too little traffic to mean anything"
    assert len(s["faults"]) >= 5, s["faults"]
    assert s["faults"].get("crash-point", 0) + s["faults"].get("slow-disk", 0) > 0, s["faults"]
    if s["faults"].get("crash-point"):    # the armed points did fire (and were survived)
        logs = "".join(open(tmp_path / "report" / "data" / n).read()
                       for n in os.listdir(tmp_path / "report" / "data") if n.endswith(".log"))
        assert "kvcore: failpoint " in logs


def test_planted_bugs_are_caught(tmp_path):
    bugs = ["stale-read", "drop-event", "dup-event", "lost-write", "early-revoke"]
    p, rep = _run(tmp_path, "--binary", "kvcore", "--rounds", "5", "--faults", "none",
                  "--inject-bug", ",".join(bugs))
    assert p.returncode == 1, p.stdout + p.stderr
    expect = {"stale-read": "is not linearizable", "drop-event": "differ from the history",
              "dup-event": "delivered twice", "lost-write": "is not in the history",
              "early-revoke": "before the 3s TTL"}
    for bug, r in zip(bugs, rep["rounds"]):
        assert r["verdict"] == "violation", r
        assert r["problems"][0].startswith(f"planted {bug}: ") and "nothing" not in r["problems"][0]
        assert any(expect[bug] in q for q in r["problems"][1:]), r["problems"]
    assert len(os.listdir(tmp_path / "report")) >= 6     # report + each round's history


def test_the_same_rounds_run_against_etcd_351(tmp_path):
    assert os.access(ETCD351, os.X_OK), "etcd 3.5.1 (tools/setup.sh installs it) is needed"
    p, rep = _run(tmp_path, "--binary", ETCD351, "--rounds", "5", "--seed", "11",
                  "--faults", "partition-leader,leader-cannot-send,kill-leader,pause-follower")
    s = rep["summary"]
    assert p.returncode == 0, p.stdout + p.stderr
    assert (s["ok"], s["violation"]) == (5, 0)


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("binary", ["kvcore", ETCD351])
def test_long_run(tmp_path, binary):
    rounds = os.environ.get("KVCORE_ROBUST_ROUNDS", "500")
    p, rep = _run(tmp_path, "--binary", binary, "--rounds", rounds, "--seed", "7",
                  timeout=4 * 3600)
    print(json.dumps(rep["summary"]))
    assert rep["summary"]["violation"] == 0
