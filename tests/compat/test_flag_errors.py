"""Bad flag values: kvcore refuses each one at start as etcd 3.5.1 does -- same exit
code, same error text -- checked against the real etcd binary, run with the same
arguments on free loopback ports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.servers import free_port

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (case arguments, environment) -- each placed after flags that give the member
# its own data dir and free ports, so a case etcd would accept cannot collide.
CASES = [
    (["--snapshot-count", "abc"], {}),
    (["--heartbeat-interval", "-1"], {}),
    (["--max-snapshots", "-1"], {}),
    (["--max-request-bytes=1.5"], {}),
    (["--initial-cluster-state", "foo"], {}),
    (["--listen-client-urls", "foo"], {}),
    (["--listen-client-urls=http://127.0.0.1"], {}),
    (["--listen-client-urls=http://127.0.0.1:2379/path"], {}),
    (["--listen-peer-urls=http://example.com:2380"], {}),
    (["--grpc-keepalive-min-time", "abc"], {}),
    (["--grpc-keepalive-interval=5"], {}),
    (["--pre-vote=maybe"], {}),
    (["--pre-vote", "maybe"], {}),
    (["--bogus"], {}),
    (["--proxy", "bad"], {}),
    (["--discovery-fallback=foo"], {}),
    (["--v2-deprecation=foo"], {}),
    (["--cors=foo"], {}),
    (["extra"], {}),
    (["--election-timeout", "10"], {}),
    (["--heartbeat-interval=0"], {}),
    (["--election-timeout=60000"], {}),
    (["--auto-compaction-mode", "foo"], {}),
    (["--auto-compaction-retention", "abc"], {}),
    (["--auto-compaction-retention", "5x"], {}),
    (["--auto-compaction-mode=revision", "--auto-compaction-retention=-5"], {}),
    (["--logger", "foo"], {}),
    (["--logger=capnslog"], {}),
    (["--log-level", "foo"], {}),
    (["--log-outputs=/nonexistent-dir/x.log"], {}),
    (["--log-outputs=default,stderr"], {}),
    (["--initial-cluster=a=http://localhost:2380"], {}),
    (["--initial-cluster=foo"], {}),
    (["--discovery=http://127.0.0.1:1/x", "--initial-cluster=default=http://127.0.0.1:1"], {}),
    (["--name"], {}),
    ([], {"ETCD_SNAPSHOT_COUNT": "abc"}),
    ([], {"ETCD_PRE_VOTE": "perhaps"}),
]


def _message(stderr: str, code: int) -> str:
    """The error as etcd states it: Go's flag line (exit 2), the panic line, or the
    error field of the log line that stops the start (exit 1)."""
    lines = stderr.splitlines()
    if code == 2:
        return next((l for l in lines if l.startswith("panic: ")), lines[0] if lines else "")
    for line in lines:
        if line.startswith("{"):
            ev = json.loads(line)
            if ev.get("msg") in ("failed to verify flags", "failed to start etcd",
                                 "failed to start kvcore"):
                return ev.get("error", "")
    return "\n".join(lines[-3:])


def _run(binary: list, args: list, env: dict, tmp: str) -> tuple[int, str]:
    cp, pp = free_port(), free_port()
    base = ["--data-dir", os.path.join(tmp, "d"),
            "--listen-client-urls", f"http://127.0.0.1:{cp}",
            "--advertise-client-urls", f"http://127.0.0.1:{cp}",
            "--listen-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-cluster", f"default=http://127.0.0.1:{pp}"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    full_env.update(env, PYTHONPATH=ROOT)
    try:
        p = subprocess.run(binary + base + args, capture_output=True, text=True, env=full_env,
                           timeout=60, cwd=tmp, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return -1, "did not exit (the value was accepted)"
    return p.returncode, _message(p.stderr, p.returncode)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Runs every case on both servers, two at a time (the machine is shared)."""
    def one(i):
        args, env = CASES[i]
        e = _run([ETCD351], args, env, str(tmp_path_factory.mktemp(f"etcd{i}")))
        k = _run([sys.executable, "-m", "kvcore"], args, env,
                 str(tmp_path_factory.mktemp(f"kvcore{i}")))
        return e, k
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(one, range(len(CASES))))
    for (args, env), ((ec, em), (kc, km)) in zip(CASES, results):   # shown with pytest -s
        flag = " ".join(args) or " ".join(f"{k}={v}" for k, v in env.items())
        print(f"{flag:<58} etcd {ec} kvcore {kc} {'same' if (ec, em) == (kc, km) else 'DIFF'}"
              f" | {em}")
    return results


@pytest.mark.parametrize("i", range(len(CASES)),
                         ids=[" ".join(a) + " ".join(f"{k}={v}" for k, v in e.items())
                              for a, e in CASES])
def test_bad_value_is_refused_as_etcd_351_refuses_it(outcomes, i):
    (e_code, e_msg), (k_code, k_msg) = outcomes[i]
    assert e_code in (1, 2), f"etcd accepted {CASES[i]}: {e_msg}"
    assert (k_code, k_msg) == (e_code, e_msg)
