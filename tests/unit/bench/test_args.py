"""Argument handling of kvcore-bench (no server needed)."""
import os

import pytest

from bench import cli, compare, runner
from bench.client import parse_endpoint


def test_defaults_like_etcd_benchmark():
    a = cli.parse_args(["put"])
    assert a.endpoint_list == [("127.0.0.1", 2379)]
    assert (a.conns, a.clients, a.total) == (1, 1, 10000)
    assert (a.key_size, a.val_size, a.key_space_size, a.sequential_keys) == (8, 8, 1, False)
    assert a.procs == 1 and not a.procs_explicit
    assert a.target_leader is False and a.user is None


def test_global_flags_before_or_after_the_subcommand():
    a = cli.parse_args(["--conns", "10", "--clients", "100", "range", "foo", "--total", "500",
                        "--consistency", "s"])
    b = cli.parse_args(["range", "foo", "--conns", "10", "--clients", "100", "--total", "500",
                        "--consistency=s"])
    for x in (a, b):
        assert (x.conns, x.clients, x.total, x.consistency, x.key, x.end) == (10, 100, 500, "s", "foo", None)
        assert x.procs == max(1, min((os.cpu_count() or 1) // 2, 10))


def test_range_with_end_and_consistency_values():
    a = cli.parse_args(["range", "a", "z", "--consistency", "L"])
    assert (a.key, a.end, a.consistency) == ("a", "z", "l")
    with pytest.raises(SystemExit) as e:
        cli.parse_args(["range", "a", "--consistency", "x"])
    assert e.value.code == 2


@pytest.mark.parametrize("argv", [
    ["put", "--conns", "0"],
    ["put", "--total", "-1"],
    ["put", "--clients", "abc"],
    ["put", "--rate", "-5"],
    ["--conns", "10", "--clients", "5", "put"],
    ["--user", "nopassword", "put"],
    ["--endpoints", "https://127.0.0.1:2379", "put"],
    ["--endpoints", "127.0.0.1", "put"],
    ["--endpoints", "127.0.0.1:notaport", "put"],
    ["--endpoints", ",", "put"],
    ["nosuchcommand"],
    [],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_endpoints_forms():
    assert parse_endpoint("127.0.0.1:2379") == ("127.0.0.1", 2379)
    assert parse_endpoint("http://localhost:23790") == ("localhost", 23790)
    assert parse_endpoint(" http://127.0.0.1:1/ ") == ("127.0.0.1", 1)
    a = cli.parse_args(["--endpoints", "127.0.0.1:1,http://127.0.0.1:2", "put"])
    assert a.endpoint_list == [("127.0.0.1", 1), ("127.0.0.1", 2)]


def test_subcommand_flags():
    a = cli.parse_args(["txn-put", "--txn-ops", "4", "--key-space-size", "100"])
    assert (a.txn_ops, a.key_space_size) == (4, 100)
    a = cli.parse_args(["watch-latency", "--put-total", "10", "--put-rate", "5"])
    assert (a.put_total, a.put_rate, a.streams, a.watchers_per_stream) == (10, 5.0, 10, 10)
    a = cli.parse_args(["lease-keepalive", "--ttl", "7"])
    assert a.ttl == 7
    a = cli.parse_args(["compare", "--etcd-bin", "/a", "--etcd-bin", "/b", "--rounds", "5",
                        "--no-kvcore"])
    assert a.etcd_bin == ["/a", "/b"] and a.rounds == 5 and a.no_kvcore


def test_compare_layouts_and_scenarios():
    assert compare.parse_layouts("1x1,10x100, 100x1000") == [(1, 1), (10, 100), (100, 1000)]
    for bad in ("10", "10x5", "0x1", "axb", ""):
        with pytest.raises(ValueError):
            compare.parse_layouts(bad)
    assert compare.parse_scenarios("put,range-s") == ["put", "range-s"]
    with pytest.raises(ValueError):
        compare.parse_scenarios("put,delete")


@pytest.mark.parametrize("conns,clients,total,procs", [
    (1, 1, 10, 1), (10, 100, 20000, 2), (100, 1000, 12345, 2), (3, 7, 100, 2), (2, 3, 5, 4)])
def test_plan_splits_everything(conns, clients, total, procs):
    spec = runner.RunSpec(endpoints=[("127.0.0.1", 1), ("127.0.0.1", 2)], conns=conns,
                          clients=clients, total=total, make_workload=None, procs=procs,
                          rate=1000.0)
    parts = runner.plan(spec)
    assert len(parts) == min(procs, conns)
    assert sum(p["total"] for p in parts) == total
    assert sum(len(p["conns"]) for p in parts) == conns
    assert sum(n for p in parts for _, n in p["conns"]) == clients
    assert sum(p["rate"] for p in parts) == pytest.approx(1000.0)
    eps = {ep for p in parts for ep, _ in p["conns"]}
    assert eps <= {("127.0.0.1", 1), ("127.0.0.1", 2)}


def test_cluster_members_share_one_initial_cluster():
    from bench import servers
    c = servers.Cluster(lambda: servers.Server("x", ["true"], "etcd"), 3, "x ×3")
    ics = {m.initial_cluster for m in c.members}
    assert len(ics) == 1
    ic = ics.pop()
    assert [m.member for m in c.members] == ["m1", "m2", "m3"]
    for m in c.members:
        assert f"{m.member}=http://127.0.0.1:{m.peer_port}" in ic
    assert len({m.port for m in c.members} | {m.peer_port for m in c.members}) == 6
    assert c.endpoints == [("127.0.0.1", m.port) for m in c.members]
    assert cli.parse_args(["compare", "--members", "3"]).members == 3
