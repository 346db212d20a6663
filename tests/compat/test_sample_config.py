"""etcd's own sample configuration file (etcd.conf.yml.sample of etcd 3.5.1, its keys
and values written out below) starts kvcore with every key recognised and honoured,
as it starts the real etcd 3.5.1 -- nested client-transport-security and
peer-transport-security blocks included."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from kvcore.config import FLAGS, parse, yamlfile
from tests import servers

ETCD351 = os.environ.get("KVCORE_TEST_ETCD35", "/opt/etcd351/bin/etcd")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# etcd 3.5.1's etcd.conf.yml.sample, key for key. The one change: the URLs' ports
# (and so initial-cluster, empty in the sample, which would default to :2380).
SAMPLE = """\
name: 'default'
data-dir:
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://localhost:{peer}
listen-client-urls: http://localhost:{client}
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://localhost:{peer}
advertise-client-urls: http://localhost:{client}
discovery:
discovery-fallback: 'proxy'
discovery-proxy:
discovery-srv:
initial-cluster: default=http://localhost:{peer}
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: true
enable-pprof: true
proxy: 'off'
proxy-failure-wait: 5000
proxy-refresh-interval: 30000
proxy-dial-timeout: 1000
proxy-write-timeout: 5000
proxy-read-timeout: 0
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
self-signed-cert-validity: 1
log-level: debug
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
"""


def _write(tmp_path, client, peer):
    path = tmp_path / "etcd.conf.yml"
    path.write_text(SAMPLE.format(client=client, peer=peer))
    return str(path)


def test_every_key_of_the_sample_is_recognised_and_taken(tmp_path):
    path = _write(tmp_path, 2379, 2380)
    cfg = parse(["--config-file", path], env={})
    assert cfg.warnings == []
    doc = yaml.safe_load(open(path))
    expected = {}
    for key, value in doc.items():
        if key in yamlfile.BLOCKS:
            for k, v in value.items():
                if v is not None:
                    expected[yamlfile.BLOCKS[key][k]] = v
        elif value is not None:
            expected[key] = value
    derived = {"quota-backend-bytes": {0: 2 * 1024 ** 3}}   # 0 means etcd's default
    for name, value in expected.items():
        want = FLAGS[name].parse(value)
        want = derived[name].get(want, want) if name in derived else want
        assert getattr(cfg, FLAGS[name].attr) == want, name
    assert (cfg.snapshot_count, cfg.strict_reconfig_check, cfg.log_level) == (10000, False,
                                                                             "debug")
    assert cfg.auto_compaction_period == 3600.0
    assert cfg.data_dir == "default.etcd"


def test_the_sample_starts_kvcore_and_etcd(tmp_path):
    results = {}
    for kind in ("etcd", "kvcore"):
        d = tmp_path / kind
        d.mkdir()
        client, peer = servers.free_port(), servers.free_port()
        path = _write(d, client, peer)
        argv = ([ETCD351] if kind == "etcd" else [sys.executable, "-m", "kvcore"]) + [
            "--config-file", path]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        env.update(PYTHONPATH=ROOT, ETCD_WORKERS="1")   # ignored: the file wins
        log = open(d / "log", "w")
        proc = subprocess.Popen(argv, cwd=d, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        try:
            servers.wait_port(client, proc, timeout=60)
            ep = f"127.0.0.1:{client}"
            rc = 1
            for _ in range(100):
                rc, _, err = servers.etcdctl(ep, "put", "k", "v")
                if rc == 0:
                    break
            assert rc == 0, err
            rc, out, _ = servers.etcdctl(ep, "endpoint", "status", "-w", "json")
            results[kind] = json.loads(out)[0]["Status"]["raftTerm"] > 0
            assert (d / "default.etcd" / "member").is_dir()   # data-dir left empty
        finally:
            proc.terminate()
            proc.wait(30)
    assert results == {"etcd": True, "kvcore": True}
    log = (tmp_path / "kvcore" / "log").read_text()
    events = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    msgs = [e["msg"] for e in events]
    assert any(m.startswith("loaded server configuration") for m in msgs)
    start = next(e for e in events if e["msg"] == "starting a kvcore server")
    assert (start["snapshot-count"], start["auto-compaction-retention"]) == (10000, "1")
    assert any("enable-pprof" in m for m in msgs)   # (enable-v2 is served: no line)
    assert any(e["level"] == "debug" for e in events)        # log-level: debug
