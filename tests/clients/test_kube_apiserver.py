"""kube-apiserver, etcd's largest consumer, on kvcore and on etcd 3.5.1 side by side.

Kubernetes 1.20.2's kube-apiserver (built from Debian's `kubernetes` source by
tests/clients/kube/build.sh, which tools/setup.sh runs) with its etcd3 storage on each
store, driven by kubectl 1.20.2 (Debian's kubernetes-client) and plain HTTP through the
scenario of tests/clients/kube_scenario.py; every step's normalised answer must be the
same on both stores. Without the binaries the build fails and so do the tests.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import etcd351, servers
from tests.clients import kube_scenario
from tests.clients.kube_apiserver import build, start_apiserver

# The compactor runs every 4 s, so the scenario's first revision is compacted within
# its run (the pages of one list are read well inside one interval); the store metrics
# are polled every second.
APISERVER_FLAGS = ("--etcd-compaction-interval=4s", "--etcd-count-metric-poll-period=1s",
                   "--etcd-db-metric-poll-interval=1s")


@pytest.fixture(scope="module")
def kube() -> tuple[str, str]:
    return build()


def run_on(kube, store_name: str, members, work: str) -> list:
    """The scenario through an apiserver on ``members``, ending with the leader killed
    -9 and started again (with three members: an election under the apiserver's
    require-leader watches)."""
    apiserver, kubectl = kube
    api = start_apiserver(apiserver, kubectl, ",".join(f"http://127.0.0.1:{m.port}"
                                                      for m in members),
                          os.path.join(work, store_name), APISERVER_FLAGS)
    killed: list = []

    def kill_leader():
        killed.append(servers.leader_of(members))
        killed[0].kill9()

    try:
        return kube_scenario.run(
            api, lambda *a: servers.etcdctl(servers.endpoints(members), *a),
            kill=kill_leader, restart=lambda: killed[0].restart(),
            quorum_left=len(members) > 1)
    finally:
        api.stop()


# The apiserver's own warnings: each kvcore line must also be one of etcd's (a line
# only etcd's run logged can be one that load or timing brought about there).
ONLY_KVCORE_FAILS = {"apiserver warnings and errors"}


def compare(results: dict) -> None:
    kv, et = results["kvcore"], results["etcd"]
    assert [s for s, _ in kv] == [s for s, _ in et]
    diffs = []
    for (name, a), (_, b) in zip(kv, et):
        if name in ONLY_KVCORE_FAILS:
            a = sorted(set(a) - set(b))
            b = []
        if a != b:
            diffs.append(f"{name}:\n  kvcore: {a!r}\n  etcd:   {b!r}")
    assert not diffs, "\n".join(diffs)


def both(kube, stores: dict, work: str) -> dict:
    with ThreadPoolExecutor(len(stores)) as pool:
        futs = {name: pool.submit(run_on, kube, name, members, work)
                for name, members in stores.items()}
        return {name: f.result() for name, f in futs.items()}


def test_kube_apiserver_one_member(kube, tmp_path):
    with servers.kvcore_and_etcd(tmp_path, workers=2, etcd_binary=etcd351.ETCD) as (kv, et):
        compare(both(kube, {"kvcore": [kv], "etcd": [et]}, str(tmp_path)))


def test_kube_apiserver_three_members(kube, tmp_path):
    kv = servers.start_cluster(str(tmp_path / "kv"), 3)
    try:
        et = servers.start_cluster(str(tmp_path / "etcd"), 3, etcd_binary=etcd351.ETCD)
        try:
            compare(both(kube, {"kvcore": kv, "etcd": et}, str(tmp_path)))
        finally:
            for m in et:
                m.stop()
    finally:
        for m in kv:
            m.stop()
