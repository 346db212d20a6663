"""A learner refuses what etcd 3.5.1's learners refuse, with etcd's error, and serves
serializable reads: the same etcdctl commands against a kvcore learner and a real
etcd 3.5.1 learner (each a one-voter cluster plus a learner added with
'member add --learner')."""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
REFUSED = "etcdserver: rpc not supported for learner"

# etcdctl arguments, stdin
REFUSED_COMMANDS = [
    (("put", "k", "v2"), None),
    (("del", "k"), None),
    (("txn", "--interactive=false"), "\nput t 1\n\n\n"),
    (("get", "k"), None),                                    # linearizable
    (("get", "k", "--rev=2"), None),
    (("lease", "grant", "10"), None),
    (("lease", "revoke", "1234"), None),
    (("lease", "timetolive", "1234"), None),
    (("lease", "list"), None),
    (("compact", "1"), None),
    (("lock", "mylock"), None),
    (("elect", "myelection", "p"), None),
    (("user", "add", "u1:pw"), None),
    (("role", "add", "r1"), None),
    (("auth", "enable"), None),
    (("member", "list"), None),
    (("alarm", "list"), None),
    (("endpoint", "hashkv"), None),
]


def _wait(pred, timeout=40.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _with_learner(kind: str, base: str):
    """-> (voter, learner) Servers; the voter holds k=v."""
    if kind == "kvcore":
        voter = servers.start_kvcore(os.path.join(base, "v.etcd"), workers=1, name="v")
    else:
        voter = servers.start_etcd(os.path.join(base, "v.etcd"), binary=ETCD351, name="v")
    learner = None
    try:
        assert voter.etcdctl("put", "k", "v")[0] == 0
        port, peer = servers.free_port(), servers.free_port()
        rc, out, err = voter.etcdctl("member", "add", "l", f"--peer-urls=http://127.0.0.1:{peer}",
                                     "--learner")
        assert rc == 0, err
        env = dict(l.split("=", 1) for l in out.splitlines() if l.startswith("ETCD_"))
        cluster = env["ETCD_INITIAL_CLUSTER"].strip('"')
        data_dir = os.path.join(base, "l.etcd")
        binary = [sys.executable, "-m", "kvcore", "--workers", "1"] if kind == "kvcore" \
            else [ETCD351]
        argv = [*binary, *servers._member_argv("l", data_dir, port, peer, "http", "http",
                                               cluster),
                "--initial-cluster-state", "existing"]
        learner = servers._launch(kind, argv, port, peer, data_dir,
                                  os.path.join(base, "l.log"),
                                  {k: v for k, v in os.environ.items()
                                   if not k.startswith("ETCD_")})
        assert _wait(lambda: learner.etcdctl("get", "k", "--consistency=s",
                                             "--print-value-only")[1].strip() == "v")
        return voter, learner
    except BaseException:
        voter.stop()
        if learner:
            learner.stop()
        raise


@pytest.fixture(scope="module")
def learners(tmp_path_factory):
    pairs = {}
    try:
        for kind in ("etcd", "kvcore"):
            pairs[kind] = _with_learner(kind, str(tmp_path_factory.mktemp(kind)))
        yield {k: v[1] for k, v in pairs.items()}
    finally:
        for voter, learner in pairs.values():
            learner.stop()
            voter.stop()


@pytest.fixture(scope="module")
def answers(learners):
    """Every refused command on both learners, run side by side: clientv3 retries an
    Unavailable answer for ~5 s before etcdctl gives up, so one at a time is slow."""
    jobs = [(kind, i) for kind in learners for i in range(len(REFUSED_COMMANDS))]

    def run(job):
        kind, i = job
        args, stdin = REFUSED_COMMANDS[i]
        rc, _out, err = servers.etcdctl(learners[kind].endpoint, *args, input=stdin,
                                        timeout=60)
        return (rc != 0, REFUSED in err)
    with ThreadPoolExecutor(8) as ex:
        return dict(zip(jobs, ex.map(run, jobs)))


@pytest.mark.parametrize("i", range(len(REFUSED_COMMANDS)),
                         ids=[" ".join(a) for a, _ in REFUSED_COMMANDS])
def test_learner_refuses_like_etcd(answers, i):
    assert answers[("etcd", i)] == (True, True), f"etcd did not refuse {REFUSED_COMMANDS[i]}"
    assert answers[("kvcore", i)] == answers[("etcd", i)]


def test_learner_serves_serializable_reads_and_status(learners):
    for learner in learners.values():
        rc, out, _ = learner.etcdctl("get", "k", "--consistency=s", "--print-value-only")
        assert rc == 0 and out.strip() == "v"
        rc, out, _ = learner.etcdctl("endpoint", "status", "-w", "json")
        assert rc == 0 and '"isLearner":true' in out.replace(" ", "")
