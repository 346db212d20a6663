"""etcd3-py (PyPI ``etcd3-py`` 0.1.6: sync and asyncio clients of the JSON gateway,
with Lease, Lock, Watcher and Txn helpers) on kvcore, with each gRPC engine serving
the gateway, as on etcd 3.5.1. The scenarios run in one subprocess per server with
etcd3-py's own directory first on the path (tests/clients/etcd3py/install.sh says
why); each test compares one scenario's results from the two servers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import etcd351, servers
from tests.clients.harness import ROOT, compare_scenario, kvcore_and_etcd351, run_scenarios
from tests.clients.names import ETCD3PY, ETCD3PY_AIO
from tests.tlscerts import make_pki

SYNC = "tests.clients.etcd3py_scenarios"
AIO = "tests.clients.etcd3py_aio_scenarios"
INSTALL = os.path.join(ROOT, "tests", "clients", "etcd3py", "install.sh")
ENGINES = ["grpcio", pytest.param("native", marks=pytest.mark.native_engine)]
TLS_SYNC, TLS_AIO = ["kv", "watch"], ["aio_kv", "aio_watch"]


@pytest.fixture(scope="module")
def library_path():
    # Installed for the interpreter that runs the scenarios (its binary wheels).
    p = subprocess.run([INSTALL], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHON=sys.executable))
    assert p.returncode == 0, f"install.sh exited {p.returncode}\n{p.stderr[-2000:]}"
    return p.stdout.strip()


def _results(srv, work, library_path) -> dict:
    env = {"PYTHONPATH": library_path + os.pathsep + ROOT}
    out = run_scenarios(SYNC, srv, work, ETCD3PY, env_extra=env)
    out.update(run_scenarios(AIO, srv, work, ETCD3PY_AIO, env_extra=env))
    return out


@pytest.fixture(scope="module")
def etcd(tmp_path_factory, library_path):
    base = tmp_path_factory.mktemp("etcd3py-etcd")
    srv = servers.start_etcd(str(base / "etcd.etcd"), binary=etcd351.ETCD)
    try:
        yield _results(srv, str(base / "work"), library_path)
    finally:
        srv.stop()


@pytest.fixture(scope="module", params=ENGINES)
def kvcore(request, tmp_path_factory, library_path):
    base = tmp_path_factory.mktemp(f"etcd3py-kvcore-{request.param}")
    srv = servers.start_kvcore(str(base / "kv.etcd"), workers=2,
                               extra=("--grpc-engine", request.param))
    try:
        yield _results(srv, str(base / "work"), library_path)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def over_tls(tmp_path_factory, library_path):
    """A few scenarios with client certificates (--client-cert-auth): etcd3-py's
    requests and aiohttp TLS set-ups against each server's TLS gateway."""
    base = tmp_path_factory.mktemp("etcd3py-tls")
    pki = make_pki(str(base / "pki"))
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--client-cert-auth", "--trusted-ca-file", pki.ca)
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override the session's CA: set too.
    env = {"PYTHONPATH": library_path + os.pathsep + ROOT, "REQUESTS_CA_BUNDLE": pki.ca,
           "CURL_CA_BUNDLE": pki.ca,
           "ETCD3PY_TLS": f"{pki.ca},{pki.client_cert},{pki.client_key}"}
    out = {}
    with kvcore_and_etcd351(base, extra=flags, scheme="https") as pair:
        for srv in pair:
            work = str(base / f"{srv.kind}-work")
            out[srv.kind] = run_scenarios(SYNC, srv, work, TLS_SYNC, env_extra=env)
            out[srv.kind].update(run_scenarios(AIO, srv, work, TLS_AIO, env_extra=env))
    return out


@pytest.mark.parametrize("name", TLS_SYNC + TLS_AIO)
def test_over_tls(over_tls, name):
    compare_scenario(over_tls, name)


def test_what_tls_shows(over_tls):
    r = over_tls["kvcore"]
    assert r["kv"]["get"]["kvs"][0]["value"] == "b:2" and r["watch"]["arrived"] is True
    assert [e.get("type", "PUT") for e in r["aio_watch"]["events"]] == ["PUT", "PUT", "DELETE"]


@pytest.mark.parametrize("name", ETCD3PY + ETCD3PY_AIO)
def test_scenario(kvcore, etcd, name):
    compare_scenario({"kvcore": kvcore, "etcd": etcd}, name)


def test_what_the_scenarios_show(kvcore):
    """A few outcomes pinned, so that both servers agreeing on a broken result fails."""
    r = kvcore
    assert r["kv"]["empty_key"]["raised"] == "ErrEmptyKey"
    assert r["kv"]["empty_key"]["status"] == 400
    assert r["kv"]["delete_prev"]["deleted"] == 1 and r["kv"]["delete_prev"]["prev_kvs"]
    assert [kv["key"] for kv in r["ranges"]["limit"]["kvs"]] == ["b:pyr/a", "b:pyr/b"]
    assert r["ranges"]["limit"]["more"] is True and r["ranges"]["count_only"]["count"] == 5
    assert r["ranges"]["future"]["raised"] == "ErrFutureRev"
    assert r["txn"]["ok"]["succeeded"] is True and "succeeded" not in r["txn"]["bad"]
    assert r["txn"]["dup_put"]["raised"] == "ErrDuplicateKey"
    assert r["lease"]["ttl"]["keys"] == ["b:pyl/1", "b:pyl/2"]
    assert r["lease"]["after"]["TTL"] == -1 and r["lease"]["revoke_again"]["status"] == 404
    assert r["stateful_lease"]["alive"] is True and r["stateful_lease"]["key_kept"] == 1
    assert r["stateful_lease"]["key_after"] == 0
    assert r["watch"]["arrived"] is True and r["watch"]["deletes"] == ["b:pyw/a"]
    assert [e["type"] for e in r["watch"]["events"]] == ["PUT", "PUT", "PUT", "DELETE"]
    assert r["watch"]["once_timeout"] is None
    assert r["lock"]["a"] is True and r["lock"]["b_held"] == "EtcdLockAcquireTimeout"
    assert r["lock"]["b_after_release"] is True and r["lock"]["released"] == 0
    assert r["maintenance"]["put_in_alarm"]["raised"] == "ErrNoSpace"
    assert r["maintenance"]["snapshot"]["last_remaining"] == 0
    assert r["compaction"]["read_compacted"]["raised"] == "ErrCompacted"
    assert r["compaction"]["watch_compacted"]["raised"] == "Etcd3WatchCanceled"
    assert r["auth"]["app_denied"]["status"] == 403
    assert r["auth"]["app_get"]["kvs"][0]["value"] == "b:1"
    assert r["auth"]["wrong_password"]["raised"] == "ErrAuthFailed"
    assert [e.get("type", "PUT") for e in r["aio_watch"]["events"]] == ["PUT", "PUT", "DELETE"]
    assert r["aio_auth"]["ro_put_denied"]["raised"] == "ErrPermissionDenied"
