"""The official Go client (go.etcd.io/etcd/clientv3, with its concurrency, leasing,
namespace and mirror packages) against kvcore and against etcd 3.5.1, transcripts
compared step by step.

tests/clients/go is a small Go program built from Debian's golang-etcd-server-dev
(etcd 3.4.23's clientv3, the client Kubernetes-era control planes vendor) by
tests/clients/go/build.sh, which tools/setup.sh runs; it prints one JSON line per step,
already normalised (revisions relative to the scenario's start, ids as <kind#n>, ports
and terms left out), so the two servers' lines must be equal. A step whose result is
"waiting" asks this side to act (kill -9 a member, ...) and answer on stdin.
Without Go or the client's source the build fails and so do the tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import etcd351, servers, tlscerts
from tests.clients.harness import kvcore_and_etcd351

GO_DIR = os.path.join(os.path.dirname(__file__), "go")
# Both servers send progress notifications every second (WithProgressNotify's step).
PAIR_FLAGS = ("--experimental-watch-progress-notify-interval=1s",)
FAST_ELECTION = ("--heartbeat-interval", "50", "--election-timeout", "500")


@pytest.fixture(scope="module")
def driver() -> str:
    p = subprocess.run([os.path.join(GO_DIR, "build.sh")], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, f"building the clientv3 driver failed:\n{p.stderr[-3000:]}"
    return p.stdout.strip()


def run(driver: str, endpoints: str, scenarios, work: str, on_wait=None,
        timeout: float = 120, flags: tuple = ()) -> list[dict]:
    """Runs the scenarios against ``endpoints`` -> the transcript. ``on_wait(step)``
    does what a "waiting" step asks and returns the line to answer; ``flags`` go to
    the driver (--cacert, --cert, --key)."""
    os.makedirs(work, exist_ok=True)
    # stderr (clientv3's retry warnings, many) to a file: a pipe read only at the end
    # would fill up and stall the driver.
    with open(os.path.join(work, "driver.stderr"), "w+") as errf:
        proc = subprocess.Popen([driver, "--endpoints", endpoints, "--work", work, *flags,
                                 *scenarios],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                                text=True)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        lines = []
        try:
            for raw in proc.stdout:
                line = json.loads(raw)
                lines.append(line)
                if line.get("result") == "waiting":
                    proc.stdin.write((on_wait(line["step"]) if on_wait else "") + "\n")
                    proc.stdin.flush()
            rc = proc.wait()
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errf.seek(0)
        err = "\n".join(l for l in errf.read().splitlines() if '"level":"warn"' not in l)
    assert rc == 0, f"driver on {endpoints} exited {rc} after {lines[-3:]}:\n{err[-3000:]}"
    return lines


def drive_both(driver, pair, scenarios, base, on_wait=None, flags: tuple = ()) -> dict:
    """The scenarios on kvcore and etcd at once -> {"kvcore": lines, "etcd": lines}.
    ``on_wait(server, step)`` acts on that server for its driver."""
    with ThreadPoolExecutor(2) as pool:
        futs = {srv.kind: pool.submit(
            run, driver, srv.endpoint, scenarios, os.path.join(str(base), srv.kind),
            (lambda step, srv=srv: on_wait(srv, step)) if on_wait else None, 120, flags)
            for srv in pair}
        return {kind: f.result() for kind, f in futs.items()}


def assert_same(got: dict) -> dict:
    """kvcore's transcript equals etcd's, step by step -> {step: line} of kvcore's."""
    kv, et = got["kvcore"], got["etcd"]
    for a, b in zip(kv, et):
        assert a == b, f"kvcore and etcd 3.5.1 differ:\nkvcore: {a}\netcd:   {b}"
    assert len(kv) == len(et), (kv[len(et):], et[len(kv):])
    return {(x["scenario"], x["step"]): x for x in kv}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with kvcore_and_etcd351(tmp_path_factory.mktemp("go-pair"), extra=PAIR_FLAGS) as p:
        yield p


def test_kv_txn_and_compact(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["kv", "txn", "compact"], tmp_path))
    assert steps[("compact", "get below the compaction")]["error"] == \
        "etcdserver: mvcc: required revision has been compacted"
    assert steps[("txn", "129 ops")]["error"] == "etcdserver: too many operations in txn request"
    assert steps[("kv", "put of 1.6 MiB")]["error"] == "etcdserver: request is too large"
    assert [kv["key"] for kv in steps[("kv", "sort value desc limit 2")]["result"]["kvs"]] == \
        ["kv/e", "kv/b"]


def test_watch(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["watch"], tmp_path))
    assert steps[("watch", "request progress")]["result"]["progress"] is True
    assert steps[("watch", "progress notify")]["result"]["progress"] is True
    assert len(steps[("watch", "fragmented history")]["result"]) == 3
    assert "larger than max" in steps[("watch", "unfragmented history")]["result"]["error"]
    assert steps[("watch", "start below the compaction")]["result"]["compact_revision"] == 3


def test_watch_resumes_across_kill9_and_restart(driver, pair, tmp_path):
    def restart(srv, step):
        srv.kill9()
        srv.restart()
        return "restarted"

    steps = assert_same(drive_both(driver, pair, ["watch-restart"], tmp_path, restart))
    after = steps[("watch-restart", "after the restart")]["result"]
    assert [(e["kv"]["key"], e["kv"]["value"]) for e in after["events"]] == \
        [("wr/2", "b"), ("wr/1", "c")]


def test_leases(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["lease", "watch-lease-edges"], tmp_path))
    assert steps[("lease", "key of the lapsed lease is deleted")]["result"] is True
    assert steps[("lease", "keep alive channel closes after revoke")]["result"] is True
    expiry = steps[("watch-lease-edges", "expiry deletes the key")]["result"]["events"]
    assert [e["type"] for e in expiry] == ["PUT", "DELETE"] and expiry[1]["prev"]["value"] == "leased"
    assert steps[("watch-lease-edges", "session done")]["result"] is True


def test_concurrency_session_mutex_election_stm(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["concurrency", "stm"], tmp_path))
    assert steps[("concurrency", "order")]["result"] == ["unlocking 1", "lock 2 acquired"]
    assert steps[("concurrency", "observed")]["result"] == ["one", "one, again", "two"]
    for level in ("serializable snapshot", "serializable", "repeatable reads"):
        assert steps[("stm", level)]["result"]["final"] == "20", level


def test_leasing_namespace_mirror(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["leasing", "namespace", "mirror"], tmp_path))
    assert steps[("leasing", "get sees that write")]["result"]["kvs"][0]["value"] == "2b"
    assert len(steps[("mirror", "sync base")]["result"]) == 3


def _snapshot_status(path: str) -> dict:
    p = subprocess.run([etcd351.ETCDUTL, "snapshot", "status", path, "-w", "json"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_maintenance_members_and_snapshot(driver, pair, tmp_path):
    steps = assert_same(drive_both(driver, pair, ["snapshot-save", "members", "maintenance"],
                                   tmp_path))
    assert steps[("maintenance", "status")]["result"]["version"] == "3.5.1"
    assert steps[("snapshot-save", "status")]["result"]["at the server's revision"] is True
    assert steps[("members", "promote a learner that is not in sync")]["error"] == \
        "etcdserver: can only promote a learner member which is in sync with leader"
    assert steps[("members", "remove the learner")]["result"] == 1
    # The snapshot each server streamed is a bbolt file etcdutl reads: at the
    # server's revision when it was taken (maintenance runs last: nothing wrote since).
    for srv in pair:
        status = _snapshot_status(str(tmp_path / srv.kind / "snapshot.db"))
        rc, out, _ = servers.etcdctl(srv.endpoint, "get", "mt/a", "-w", "json")
        assert rc == 0
        assert status["revision"] == json.loads(out)["header"]["revision"], srv.kind
        assert status["totalKey"] > 0


def test_auth_and_token_refresh(driver, tmp_path):
    with kvcore_and_etcd351(tmp_path / "servers", extra=("--auth-token-ttl=1",)) as pair:
        steps = assert_same(drive_both(driver, pair, ["auth", "auth-changes"], tmp_path))
    assert steps[("auth", "an expired token")]["error"] == \
        "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
    assert steps[("auth", "a fresh token")]["result"] is None
    assert steps[("auth", "alice reads after her token expired")]["result"]["count"] == 1
    assert steps[("auth", "alice writes au/x")]["error"] == "etcdserver: permission denied"
    assert steps[("auth-changes", "delete the root role")]["error"] == \
        "etcdserver: invalid auth management"


def test_tls_with_client_certificates(driver, tmp_path):
    """The same scenarios over TLS with client certificates required (the Go client's
    own TLS stack and ALPN against kvcore's engine), auth included."""
    pki = tlscerts.make_pki(str(tmp_path / "pki"))
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--client-cert-auth", "--trusted-ca-file", pki.ca, "--auth-token-ttl=1")
    with kvcore_and_etcd351(tmp_path / "servers", extra=flags, scheme="https") as pair:
        steps = assert_same(drive_both(
            driver, pair, ["txn", "auth"], tmp_path,
            flags=("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)))
    assert steps[("txn", "value =")]["result"]["succeeded"] is True
    assert steps[("auth", "alice reads after her token expired")]["result"]["count"] == 1


def _cluster_run(driver, members, base) -> list[dict]:
    """move-leader, then failover, on one cluster of three."""
    def act(step):
        alive = [m for m in members if m.proc.poll() is None]
        if step == "kill -9 the leader":
            servers.leader_of(alive).kill9()
            return "ok"
        assert step == "stop the leader of the two left", step
        leader = servers.leader_of(alive)
        leader.kill9()
        return next(m for m in alive if m is not leader).endpoint

    return run(driver, servers.endpoints(members), ["move-leader", "failover"], base, act)


def test_three_members_move_leader_and_failover(driver, tmp_path):
    got = {}
    for kind, binary in (("kvcore", None), ("etcd", etcd351.ETCD)):
        members = servers.start_cluster(str(tmp_path / kind), n=3, etcd_binary=binary,
                                        extra=FAST_ELECTION)
        try:
            servers.leader_of(members)
            got[kind] = _cluster_run(driver, members, str(tmp_path / kind / "work"))
        finally:
            for m in members:
                m.stop()
    steps = assert_same(got)
    assert steps[("move-leader", "the target leads")]["result"] is True
    assert steps[("move-leader", "sync finds every member's client URL")]["result"] is True
    assert steps[("failover", "writes after the kill that succeeded")]["result"] == 5
    assert steps[("failover", "get with require leader on the last member")]["error"] == \
        "etcdserver: no leader"
