"""Configuration: etcd's flag names and defaults, ETCD_* env, YAML config file."""
import subprocess
import sys

import pytest

from kvcore.server import config
from kvcore.server.config import ConfigError, parse


def test_defaults_are_etcds():
    c = parse([], env={})
    assert c.name == "default" and c.data_dir == "default.etcd"
    assert c.listen_client_urls == ["http://localhost:2379"]
    assert c.initial_cluster == "default=http://localhost:2380"
    assert (c.heartbeat_interval, c.election_timeout, c.snapshot_count) == (100, 1000, 100000)
    assert (c.max_request_bytes, c.max_txn_ops) == (1572864, 128)
    assert c.quota_backend_bytes == 2 * 1024 ** 3
    assert c.initial_cluster_state == "new" and c.initial_cluster_token == "etcd-cluster"


def test_data_dir_follows_name():
    assert parse(["--name", "n1"], env={}).data_dir == "n1.etcd"


@pytest.mark.parametrize("argv", [["--name", "x"], ["--name=x"], ["-name", "x"], ["-name=x"]])
def test_flag_syntaxes(argv):
    assert parse(argv, env={}).name == "x"


def test_env_vars_and_flag_precedence():
    env = {"ETCD_NAME": "fromenv", "ETCD_SNAPSHOT_COUNT": "5", "ETCD_MAX_TXN_OPS": "7"}
    c = parse(["--max-txn-ops", "9"], env=env)
    assert (c.name, c.snapshot_count, c.max_txn_ops) == ("fromenv", 5, 9)
    assert any("shadows environment variable ETCD_MAX_TXN_OPS" in w for w in c.warnings)


def test_unknown_env_var_is_reported():
    c = parse([], env={"ETCD_NOT_A_FLAG": "1"})
    assert any("ETCD_NOT_A_FLAG" in w for w in c.warnings)


def test_config_file_replaces_flags_and_env(tmp_path):
    f = tmp_path / "etcd.yaml"
    f.write_text("name: fromfile\ndata-dir: /tmp/dd\nlisten-client-urls: http://127.0.0.1:12379\n"
                 "heartbeat-interval: 50\nelection-timeout: 500\n"
                 "initial-advertise-peer-urls: http://127.0.0.1:12380\n"
                 "initial-cluster: fromfile=http://127.0.0.1:12380\n")
    c = parse(["--config-file", str(f), "--name", "ignored"], env={"ETCD_MAX_TXN_OPS": "3"})
    assert c.name == "fromfile" and c.data_dir == "/tmp/dd"
    assert c.listen_client_urls == ["http://127.0.0.1:12379"]
    assert (c.heartbeat_interval, c.election_timeout, c.max_txn_ops) == (50, 500, 128)


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unknown flag: --bogus"),
    (["--heartbeat-interval", "fast"], "--heartbeat-interval: not an integer"),
    (["--snapshot-count", "0"], "must be >= 1"),
    (["--listen-client-urls", "127.0.0.1:2379"], "expected a URL"),
    (["--listen-client-urls", "http://127.0.0.1"], "must include a port"),
    (["--initial-cluster-state", "maybe"], "must be one of new, existing"),
    (["--log-level", "loud"], "--log-level"),
    (["--heartbeat-interval", "300"], "should be at least as 5 times"),
    (["--name", "a", "--initial-cluster", "b=http://localhost:2380"], "couldn't find local name"),
    (["--name"], "flag needs an argument"),
    (["stray"], "not a valid flag"),
])
def test_bad_input_is_refused_clearly(argv, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse(argv, env={})


def test_bad_flag_stops_the_server_with_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "kvcore", "--no-such-flag"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == "kvcore: unknown flag: --no-such-flag"


def test_every_flag_has_a_config_field():
    fields = set(config.Config.__dataclass_fields__)
    assert {n.replace("-", "_") for n in config.FLAGS} <= fields
