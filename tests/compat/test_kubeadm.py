"""kubeadm's etcd command line (the static pod kubeadm writes for a control-plane
node: TLS files, --client-cert-auth, --experimental-initial-corrupt-check=true,
--experimental-watch-progress-notify-interval=5s, --listen-metrics-urls,
--snapshot-count=10000), plus --logger zap --log-outputs stderr, starts kvcore as
it starts etcd 3.5.1, and both serve etcdctl over TLS with client certificates."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import promscrape, servers, tlscerts

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kubeadm_flags(pki, data_dir: str, client: int, peer: int, metrics: int) -> list:
    """As kubeadm's getEtcdCommand writes them (node name 'cp1', node IP 127.0.0.1,
    one more client URL on 127.0.0.2 standing for the node address)."""
    return [
        "--advertise-client-urls=https://127.0.0.1:%d" % client,
        f"--cert-file={pki.server_cert}",
        "--client-cert-auth=true",
        f"--data-dir={data_dir}",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        "--initial-advertise-peer-urls=https://127.0.0.1:%d" % peer,
        "--initial-cluster=cp1=https://127.0.0.1:%d" % peer,
        f"--key-file={pki.server_key}",
        "--listen-client-urls=https://127.0.0.1:%d,https://127.0.0.2:%d" % (client, client),
        "--listen-metrics-urls=http://127.0.0.1:%d" % metrics,
        "--listen-peer-urls=https://127.0.0.1:%d" % peer,
        "--name=cp1",
        f"--peer-cert-file={pki.server_cert}",
        "--peer-client-cert-auth=true",
        f"--peer-key-file={pki.server_key}",
        f"--peer-trusted-ca-file={pki.ca}",
        "--snapshot-count=10000",
        f"--trusted-ca-file={pki.ca}",
        "--logger", "zap", "--log-outputs", "stderr",
    ]


@pytest.mark.parametrize("kind", ["etcd", "kvcore"])
def test_kubeadm_command_line_serves_etcdctl_over_tls(tmp_path, kind):
    pki = tlscerts.make_pki(str(tmp_path / "pki"))
    client, peer, metrics = servers.free_port(), servers.free_port(), servers.free_port()
    argv = ([ETCD351] if kind == "etcd" else [sys.executable, "-m", "kvcore"]) + \
        kubeadm_flags(pki, str(tmp_path / "etcd"), client, peer, metrics)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(PYTHONPATH=ROOT)
    if kind == "kvcore":
        env["ETCD_WORKERS"] = "1"     # kvcore's own flag, the shared test machine
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as errf:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        servers.wait_port(client, proc, timeout=60)
        ctl = ("--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key)
        ep = f"https://127.0.0.1:{client}"
        rc = 1
        for _ in range(50):
            rc, _, err = servers.etcdctl(ep, *ctl, "put", "/registry/k", "v")
            if rc == 0:
                break
        assert rc == 0, err
        rc, out, _ = servers.etcdctl(ep, *ctl, "get", "/registry/k", "--print-value-only")
        assert out.strip() == "v"
        # without a client certificate: refused
        rc, _, _ = servers.etcdctl(ep, "--cacert", pki.ca, "get", "/registry/k",
                                   timeout=60)
        assert rc != 0
        # The plain metrics URL kubeadm's probes use: /health and /metrics.
        status, _, body = promscrape.get(f"http://127.0.0.1:{metrics}/health")
        assert (status, body) == (200, b'{"health":"true","reason":""}')
        text = promscrape.scrape(f"http://127.0.0.1:{metrics}")
        assert promscrape.value(text, "etcd_server_has_leader") == 1
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [l for l in err_path.read_text().splitlines() if l.strip()]
    events = [json.loads(l) for l in lines if l.startswith("{")]
    assert events and all({"level", "ts", "caller", "msg"} <= set(e) for e in events)
    if kind == "kvcore":   # (etcd also prints grpc-go's plain WARNING lines)
        assert len(events) == len(lines)
