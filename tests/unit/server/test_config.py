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
    (["--bogus"], "flag provided but not defined: -bogus"),
    (["--heartbeat-interval", "fast"], 'invalid value "fast" for flag -heartbeat-interval: parse error'),
    (["--listen-client-urls", "127.0.0.1:2379"], "URL scheme must be http, https, unix, or unixs"),
    (["--listen-client-urls", "http://127.0.0.1"], 'does not have the form "host:port"'),
    (["--initial-cluster-state", "maybe"], "for flag -initial-cluster-state: invalid value"),
    (["--log-level", "loud"], 'unrecognized level: "loud"'),
    (["--heartbeat-interval", "300"], "should be at least as 5 times"),
    (["--name", "a", "--initial-cluster", "b=http://localhost:2380"], "couldn't find local name"),
    (["--name"], "flag needs an argument"),
    (["stray"], "not a valid flag"),
    (["--pre-vote", "false"], "'false' is not a valid flag"),
])
def test_bad_input_is_refused_clearly(argv, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse(argv, env={})


def test_bad_flag_stops_the_server_with_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "kvcore", "--no-such-flag"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == "flag provided but not defined: -no-such-flag"


def test_every_flag_has_a_config_attribute_with_its_parsed_default():
    c = config.Config()
    for f in config.FLAGS.values():
        assert hasattr(c, f.attr), f.name


def test_every_flag_of_etcd_351_help_is_accepted():
    out = subprocess.run(["/opt/etcd351/bin/etcd", "--help"], capture_output=True, text=True,
                         timeout=30)
    names = {l.split()[0][2:] for l in (out.stdout + out.stderr).splitlines()
             if l.startswith("  --")}
    assert len(names) >= 90
    assert names <= set(config.FLAGS), sorted(names - set(config.FLAGS))


def test_boolean_flags_take_go_syntax():
    c = parse(["--pre-vote=false", "--strict-reconfig-check=0", "--unsafe-no-fsync"], env={})
    assert (c.pre_vote, c.strict_reconfig_check, c.unsafe_no_fsync) == (False, False, True)


def test_durations_and_lists():
    c = parse(["--grpc-keepalive-min-time=1m30s", "--log-outputs=stderr,stdout",
               "--cors=http://a.example:80,*"], env={})
    assert c.grpc_keepalive_min_time == 90.0
    assert c.log_outputs == ["stderr", "stdout"] and c.cors == ["http://a.example:80", "*"]


@pytest.mark.parametrize("mode, retention, period, revisions", [
    ("periodic", "1", 3600.0, 0), ("periodic", "2s", 2.0, 0), ("periodic", "1h30m", 5400.0, 0),
    ("revision", "1000", 0.0, 1000), ("periodic", "0", 0.0, 0),
])
def test_compaction_retention_follows_etcds_rules(mode, retention, period, revisions):
    c = parse([f"--auto-compaction-mode={mode}", f"--auto-compaction-retention={retention}"],
              env={})
    assert (c.auto_compaction_period, c.auto_compaction_revisions) == (period, revisions)


def test_unsupported_flags_are_refused_only_when_used():
    parse(["--auth-token=simple", "--enable-v2=false"], env={})
    assert parse(["--force-new-cluster"], env={}).force_new_cluster is True
    assert parse(["--host-whitelist=a.example,b"], env={}).host_whitelist == ["a.example", "b"]
    assert parse(["--proxy=readonly"], env={}).proxy == "readonly"


def test_discovery_flags_are_accepted():
    c = parse(["--discovery=http://d:1/t", "--discovery-proxy=p:3128",
               "--discovery-fallback=exit"], env={})
    assert (c.discovery, c.discovery_proxy, c.discovery_fallback) == (
        "http://d:1/t", "p:3128", "exit")
    c = parse(["--discovery-srv=example.test", "--discovery-srv-name=a"], env={})
    assert (c.discovery_srv, c.discovery_srv_name) == ("example.test", "a")


def test_a_v2_proxy_needs_no_own_name_in_the_initial_cluster():
    c = parse(["--proxy=readonly", "--name=p", "--initial-cluster=m1=http://127.0.0.1:2380"],
              env={})
    assert c.proxy == "readonly"


def test_discovery_keys_of_a_config_file_are_taken(tmp_path):
    f = tmp_path / "c.yml"
    f.write_text("name: n1\ndiscovery: http://d:1/v2/keys/_etcd/registry/t\n"
                 "discovery-fallback: exit\ndiscovery-proxy: p:3128\n")
    c = parse(["--config-file", str(f)], env={})
    assert (c.discovery, c.discovery_fallback, c.discovery_proxy) == (
        "http://d:1/v2/keys/_etcd/registry/t", "exit", "p:3128")
    f.write_text("discovery-srv: example.test\ndiscovery-srv-name: a\n")
    c = parse(["--config-file", str(f)], env={})
    assert (c.discovery_srv, c.discovery_srv_name, c.warnings) == ("example.test", "a", [])


def test_go_only_flag_is_accepted_with_a_notice():
    c = parse(["--enable-pprof"], env={})
    assert any("enable-pprof" in m for _lvl, m, _f in c.notices)
