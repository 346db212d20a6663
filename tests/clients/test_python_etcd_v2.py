"""python-etcd (Debian's python3-etcd 0.4.5, the classic v2 client; Patroni's v2 DCS
uses it) on kvcore --enable-v2 as on etcd 3.4.23 --enable-v2, the project's v2 oracle.

The scenarios are in python_etcd_v2_scenarios.py and run under the system Python the
package is built for (/usr/bin/python3), one process per server; each test here
compares one scenario's results from the two servers (normalised there: indexes as
offsets, raft figures as presence, times and TTLs as placeholders)."""
from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers
from tests.clients.harness import ROOT, compare_scenario
from tests.tlscerts import make_pki

ETCD34 = "/usr/bin/etcd"
SYSTEM_PYTHON = "/usr/bin/python3"      # where python3-etcd is installed
MODULE = "tests.clients.python_etcd_v2_scenarios"
# auth last: it turns v2 auth on (and off again) on the same servers
SINGLE = ["keys", "ttl", "cas", "in_order", "watch", "info", "lock", "reconnect", "edges",
          "auth"]
V2 = ("--enable-v2",)


def run_scenarios(ports, names, *opts, timeout=240) -> dict:
    """``python -m MODULE`` with the system Python against ``ports`` (the client's
    first); its results."""
    # A fixed hash seed: etcd.auth sends a role's paths in set order, which would
    # differ between the two processes.
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONHASHSEED="0")
    p = subprocess.run([SYSTEM_PYTHON, "-m", MODULE, "--ports", ",".join(map(str, ports)),
                        *opts, *names], capture_output=True, text=True, env=env,
                       timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, f"{MODULE} exited {p.returncode}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("pyetcd2")
    kv = servers.start_kvcore(str(base / "kv.etcd"), workers=2, extra=V2)
    try:
        et = servers.start_etcd(str(base / "etcd.etcd"), binary=ETCD34, extra=V2)
        try:
            # Both at once: the scenarios mostly wait (TTLs, watch timeouts).
            with ThreadPoolExecutor(2) as pool:
                runs = {srv.kind: pool.submit(run_scenarios, [srv.port], SINGLE)
                        for srv in (kv, et)}
            return {kind: f.result() for kind, f in runs.items()}
        finally:
            et.stop()
    finally:
        kv.stop()


@pytest.mark.parametrize("name", SINGLE)
def test_scenario(results, name):
    compare_scenario(results, name)


def test_what_the_scenarios_show(results):
    """A few outcomes pinned, so that both servers agreeing on a broken result fails."""
    r = results["kvcore"]
    assert r["keys"]["missing"]["raised"] == "EtcdKeyNotFound"
    assert r["keys"]["under_file"]["raised"] == "EtcdNotDir"
    assert r["keys"]["file_over_dir"]["raised"] == "EtcdNotFile"
    assert r["keys"]["delete_dir_nonempty"]["raised"] == "EtcdDirNotEmpty"
    assert r["keys"]["contains"] == [True, False]
    assert r["cas"]["tas_fail"]["raised"] == "EtcdCompareFailed"
    assert r["cas"]["create_exists"]["raised"] == "EtcdAlreadyExist"
    assert r["cas"]["cad_value_ok"]["action"] == "compareAndDelete"
    assert r["ttl"]["expired"]["raised"] == "EtcdKeyNotFound"
    assert r["ttl"]["watch_expire"]["action"] == "expire"
    assert r["watch"]["cleared"]["raised"] == "EtcdEventIndexCleared"
    assert r["watch"]["recursive_live"]["node"]["key"] == "/w/sub/deep/c"
    assert r["watch"]["timeout"]["raised"] == "EtcdWatchTimedOut"
    assert len(r["watch"]["eternal"]) == 5
    assert [v for _, v in r["in_order"]["sorted"]] == ["a", "b", "c", "d"]
    assert r["lock"]["a_acquire"] is True and r["lock"]["b_try"] is False
    assert r["lock"]["b_after_release"] is True and r["lock"]["short_held_past_ttl"] is False
    assert r["keys"]["pop"]["value"] == "popped"
    assert r["cas"]["prev_both_fail"]["payload"]["cause"] == "[zz != x] [2 != 3]"
    assert r["info"]["get_lock"]["raised"] == "NotImplementedError"
    assert [r["edges"][k + "_gone"] for k in ("ttl_zero", "ttl_huge", "ttl_uint64_max")] == [
        True, True, True] and r["edges"]["t33_kept"] == "v"
    assert r["auth"]["enable_without_root"]["payload"]["status"] == 409
    assert r["auth"]["anon_read"]["raised"] == "EtcdInsufficientPermissions"
    assert r["auth"]["app_write"]["action"] == "set" and r["auth"]["active_after"] is False
    assert r["auth"]["user_read"] == {"raised": "TypeError", "message": "unhashable type: 'dict'"}
    assert r["reconnect"]["machines"] is True and r["reconnect"]["write"]["action"] == "set"


def _cluster_run(base, etcd_binary) -> dict:
    """The cluster scenario on three fresh members (kvcore's or etcd 3.4.23's), the
    client on a follower first, which the scenario stops."""
    members = servers.start_cluster(str(base), extra=V2, etcd_binary=etcd_binary)
    try:
        leader = servers.leader_of(members)
        order = [m for m in members if m is not leader] + [leader]
        return run_scenarios([m.port for m in order], ["cluster"],
                             "--stop-pid", str(order[0].proc.pid))
    finally:
        for m in members:
            m.stop()


def test_cluster_of_three(tmp_path):
    got = {"kvcore": _cluster_run(tmp_path / "kv", None),
           "etcd": _cluster_run(tmp_path / "etcd", ETCD34)}
    compare_scenario(got, "cluster")
    r = got["kvcore"]["cluster"]
    assert r["machines"] and r["stopped"] and r["moved_on"] and r["machines_after"]
    assert r["members"] == [["m0", True], ["m1", True], ["m2", True]]
    assert r["state"] == "StateFollower"
    assert r["leader_stats_on_follower"] == {
        "raised": "EtcdException", "payload": {"message": "not current leader", "status": 403}}
    assert r["write_after_stop"]["action"] == "set" and r["quorum_after"]["node"]["value"] == "2"
    assert r["watch_from_first"]["node"]["value"] == "1"
    assert r["watch_across_stop"]["node"]["value"] == "2" and r["watcher_moved_on"]


def test_tls_with_client_certificates(tmp_path):
    pki = make_pki(str(tmp_path / "pki"))
    flags = V2 + ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
                  "--client-cert-auth", "--trusted-ca-file", pki.ca)
    files = ("--ca", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
             "--other-ca", pki.other_ca)
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2, extra=flags, scheme="https")
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34, extra=flags,
                                scheme="https")
        try:
            got = {srv.kind: run_scenarios([srv.port], ["tls"], *files) for srv in (kv, et)}
        finally:
            et.stop()
    finally:
        kv.stop()
    compare_scenario(got, "tls")
    r = got["kvcore"]["tls"]
    assert r["read"]["node"]["value"] == "1" and r["machines"]
    assert r["timeout"]["raised"] == "EtcdWatchTimedOut"
    assert r["parked_watch"]["node"]["key"] == "/tls/b/c" and r["lock"] is True
    assert r["no_cert"] == r["no_ca"] == "EtcdConnectionFailed"
