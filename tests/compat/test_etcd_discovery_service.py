"""The etcd-discovery service (Debian's `etcd-discovery`, the discovery.etcd.io server)
backed by a kvcore member with --enable-v2, compared with the same service backed by
etcd 3.5.1 --enable-v2.

The service keeps its tokens in its backend through etcd's v2 keys client (`/new`
creates `_etcd/registry/<token>/_config/size`, `/health` creates and deletes a token)
and proxies `/<token>...` to `/v2/keys/_etcd/registry/<token>...`. Members started
with `--discovery=http://<service>/<token>` register through it. Here the service's
answers are compared between the two backends, and a 3-member etcd 3.5.1 cluster and a
3-member kvcore cluster bootstrap from tokens of the kvcore-backed service (the
etcd-backed run of the same is slow: tests/compat/test_discovery_cluster.py already
bootstraps both kinds from etcd as the service).

Nothing of the package's own init script runs: the binary is started here on a free
loopback port (its default :8087 and its default backend 127.0.0.1:2379 are never used).
"""
from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from tests import discovery_members as dm
from tests import servers
from tests.etcd351 import ETCD as ETCD351

DISCOVERY = "/usr/bin/discovery.etcd.io"


def _get(url: str) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Service:
    """discovery.etcd.io in front of one backend member (kvcore or etcd 3.5.1)."""

    def __init__(self, backend: str, base: str, v2: bool = True):
        data = f"{base}/{backend}-{v2}-backend.etcd"
        flags = ("--enable-v2",) if v2 else ()
        self.backend = (servers.start_kvcore(data, extra=flags) if backend == "kvcore" else
                        servers.start_etcd(data, binary=ETCD351, extra=flags))
        port = servers.free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(f"{base}/{backend}-{v2}-discovery.log", "w")
        self.proc = subprocess.Popen(
            [DISCOVERY, "--etcd", f"http://127.0.0.1:{self.backend.port}",
             "--addr", f"127.0.0.1:{port}", "--host", self.url],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        try:
            servers.wait_port(port, self.proc)
        except BaseException:
            self.stop()
            raise

    def new_token(self, size: int = 3) -> str:
        status, url = _get(f"{self.url}/new?size={size}")
        assert status == 200 and url.startswith(self.url + "/"), (status, url)
        return url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()
        self.backend.stop()


@pytest.fixture
def services(tmp_path):
    made = []
    try:
        made.append(Service("kvcore", str(tmp_path)))
        made.append(Service("etcd", str(tmp_path)))
        yield {"kvcore": made[0], "etcd": made[1]}
    finally:
        for s in made:
            s.stop()


def _masked(text: str) -> str:
    """Token, index and port masked: the rest must be byte for byte etcd's. (v2
    indexes count from each store's own start; kvcore's is not etcd's index.)"""
    text = re.sub(r"[0-9a-f]{32}", "TOKEN", text)
    text = re.sub(r'"(modifiedIndex|createdIndex|index)":\d+', r'"\1":N', text)
    return re.sub(r"\[\d+\]", "[N]", text)


def _service_answers(svc: Service) -> list:
    url = svc.new_token(3)
    token = url.rsplit("/", 1)[1]
    out = [_get(f"{svc.url}/health"),
           _get(url),                          # the token dir: _config is hidden
           _get(f"{url}/_config/size"),
           _get(f"{svc.url}/{'0' * 32}"),      # an unknown token: v2's 100
           _get(f"{svc.url}/new?size=x")[0],
           _get(f"{svc.url}/health")]          # the health check left no token behind
    status, body = _get(f"http://127.0.0.1:{svc.backend.port}/v2/keys/_etcd/registry")
    names = sorted(n["key"].rsplit("/", 1)[1] for n in json.loads(body)["node"]["nodes"])
    out.append((status, names == [token]))
    return [_masked(str(x)) for x in out]


def test_service_answers_alike_on_kvcore_and_etcd(services):
    kv = _service_answers(services["kvcore"])
    assert kv[0] == "(200, 'OK')" and kv[-1] == "(200, True)", kv
    # Before kvcore hid "_config" from listings, the token dir came back with a
    # "nodes" list etcd does not send.
    assert '"nodes"' not in kv[1], kv[1]
    assert kv == _service_answers(services["etcd"])


def test_service_on_a_backend_without_v2_fails_alike(tmp_path):
    outs = []
    for backend in ("kvcore", "etcd"):
        svc = Service(backend, str(tmp_path), v2=False)
        try:
            outs.append([_get(f"{svc.url}/new"), _get(f"{svc.url}/health")])
        finally:
            svc.stop()
    assert outs[0] == [(400, "Unable to generate token\n"),
                       (400, "health failed to setupToken\n")]
    assert outs[0] == outs[1]


def _bootstrap(kind: str, base: str, url: str) -> dict:
    members = [dm.spawn(kind, base, f"m{i}", ("--discovery", url)) for i in range(3)]
    try:
        dm.wait_serving(members)
        names = [dm.member_names(m.endpoint) for m in members]
        assert servers.etcdctl(members[0].endpoint, "put", "k", kind)[0] == 0
        rc, got, _ = servers.etcdctl(members[2].endpoint, "get", "k", "--print-value-only")
        status, body = _get(url)                  # the registry, through the service
        registered = sorted(n["value"].split("=")[0]
                            for n in json.loads(body)["node"].get("nodes", []))
        return {"names": names, "got": got.strip() == kind, "token": status,
                "registered": registered}
    finally:
        dm.stop_all(members)


def _bootstrap_both(svc: Service, base: str) -> None:
    want = {"names": [["m0", "m1", "m2"]] * 3, "got": True, "token": 200,
            "registered": ["m0", "m1", "m2"]}
    assert _bootstrap("etcd", f"{base}/etcd", svc.new_token(3)) == want
    assert _bootstrap("kvcore", f"{base}/kvcore", svc.new_token(3)) == want


def test_clusters_bootstrap_from_the_kvcore_backed_service(tmp_path):
    svc = Service("kvcore", str(tmp_path))
    try:
        _bootstrap_both(svc, str(tmp_path))
    finally:
        svc.stop()


@pytest.mark.slow
def test_clusters_bootstrap_from_the_etcd_backed_service(tmp_path):
    svc = Service("etcd", str(tmp_path))
    try:
        _bootstrap_both(svc, str(tmp_path))
    finally:
        svc.stop()
