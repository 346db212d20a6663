"""python-etcd3 (gRPC, its own generated stubs) on kvcore as on etcd 3.5.1. The
scenarios are in etcd3_scenarios.py and run in one subprocess per server (see there
why); each test here compares one scenario's results from the two servers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.clients.etcd3_scenarios_names import AUTH, PLAIN
from tests.clients.harness import kvcore_and_etcd351, same
from tests.tlscerts import make_pki

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(srv, work, names, *opts):
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.makedirs(work, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "tests.clients.etcd3_scenarios",
                        "--port", str(srv.port), "--work", work, *opts, *names], capture_output=True, text=True, env=env,
                       timeout=240, cwd=ROOT)
    assert p.returncode == 0, f"{srv.kind}: scenarios exited {p.returncode}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


def _enable_auth(srv):
    """Users root and app (read-write on app/), then auth on: with the real etcdctl."""
    for args in (("user", "add", "root", "--new-user-password=rootpw"),
                 ("role", "add", "app"),
                 ("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true"),
                 ("user", "add", "app", "--new-user-password=apppw"),
                 ("user", "grant-role", "app", "app"),
                 ("auth", "enable")):
        rc, out, err = srv.etcdctl(*args)
        assert rc == 0, f"{srv.kind}: etcdctl {' '.join(args)}: {err}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("etcd3")
    out = {}
    with kvcore_and_etcd351(base / "plain") as pair:
        for srv in pair:
            out[srv.kind] = _run(srv, str(base / f"{srv.kind}-work"), PLAIN)
    # Auth on TLS servers (etcd3_scenarios.py says why).
    pki = make_pki(str(base / "pki"))
    tls = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    with kvcore_and_etcd351(base / "auth", extra=tls, scheme="https",
                            ctl_args=("--cacert", pki.ca)) as pair:
        for srv in pair:
            _enable_auth(srv)
            out[srv.kind].update(_run(srv, str(base / f"{srv.kind}-work"), AUTH,
                                      "--ca", pki.ca, "--user", "root"))
    return out


@pytest.mark.parametrize("name", PLAIN + AUTH)
def test_scenario(results, name):
    got = {kind: results[kind][name] for kind in ("kvcore", "etcd")}
    for kind, r in got.items():
        assert "crash" not in r, f"{kind}: {r.get('crash')}"
    same(got)
