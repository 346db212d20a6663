"""End to end against the trivial server and (when installed) a real etcd on a fresh
temp data dir and free ports. Counts and exit codes only; no timing assertions."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from bench import cli, exitcodes, runner, runs, servers, workloads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def trivial():
    port = servers.free_port()
    p = subprocess.Popen([sys.executable, "-m", "bench.trivial_server", "--port", str(port)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        p.terminate()
        p.wait(10)


@pytest.mark.timeout(60)
def test_runner_against_trivial_server(trivial):
    wl = workloads.range_workload("foo", consistency="s")
    spec = runner.RunSpec(endpoints=[("127.0.0.1", trivial)], conns=4, clients=40, total=3000,
                          make_workload=lambda p, n: wl, procs=2, max_seconds=30)
    res = runner.run(spec)
    assert res["ok"] == 3000 and res["errors"] == {}
    assert res["latency"]["count"] == 3000
    assert res["procs"] == 2 and res["generator"]["cpu_s"] >= 0


@pytest.mark.timeout(60)
def test_cli_json_against_trivial_server(trivial, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli.main(["--endpoints", f"127.0.0.1:{trivial}", "--conns", "2", "--clients", "8",
                   "--total", "500", "--no-progress", "range", "foo", "--consistency", "s",
                   "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["ok"] == 500 and d["subcommand"] == "range"
    for k in ("rps", "latency", "generator", "errors", "histogram"):
        assert k in d
    assert "Requests/sec" in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_server_down_is_a_clear_error(capsys):
    port = servers.free_port()
    rc = cli.main(["--endpoints", f"127.0.0.1:{port}", "put"])
    assert rc == exitcodes.EXIT_USAGE
    assert "connection refused" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_http1_endpoint_is_a_clear_error(capsys):
    port = servers.free_port()
    p = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        rc = cli.main(["--endpoints", f"127.0.0.1:{port}", "range", "foo"])
    finally:
        p.terminate()
        p.wait(10)
    assert rc == exitcodes.EXIT_USAGE
    assert "did not answer with HTTP/2" in capsys.readouterr().err


ETCD = next(iter(servers.default_etcd_bins()), None)


@pytest.fixture(scope="module")
def etcd():
    s = servers.etcd_server(ETCD).start()
    try:
        why = s.wait_ready(30)
        if why:
            pytest.fail(f"etcd did not start: {why}")
        yield s
    finally:
        s.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv", [
    ["put", "--key-size", "8", "--val-size", "64", "--key-space-size", "100"],
    ["range", "foo", "--consistency", "l"],
    ["range", "foo", "--consistency", "s", "--target-leader"],
    ["put", "--rate", "5000", "--sequential-keys", "--key-space-size", "1000"],
    ["txn-put", "--txn-ops", "2", "--key-space-size", "50"],
    ["lease-keepalive"],
    ["watch", "--streams", "2", "--watch-per-stream", "5", "--put-total", "10"],
    ["watch-latency", "--streams", "2", "--watchers-per-stream", "2", "--put-total", "10",
     "--put-rate", "1000"],
])
def test_every_subcommand_against_real_etcd(etcd, argv, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli.main(["--endpoints", f"127.0.0.1:{etcd.port}", "--conns", "2", "--clients", "4",
                   "--total", "200", "--no-progress", "--json", str(out)] + argv)
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["ok"] > 0 and d["error_count"] == 0, d["errors"]
    assert "Summary" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_auth_required_is_a_clear_error(capsys):
    ctl = os.path.join(os.path.dirname(ETCD), "etcdctl")
    s = servers.etcd_server(ETCD).start()
    try:
        assert s.wait_ready(30) is None
        ep = f"127.0.0.1:{s.port}"
        env = dict(os.environ, ETCDCTL_API="3")
        subprocess.run([ctl, "--endpoints", ep, "user", "add", "root:pw"], check=True,
                       capture_output=True, env=env, timeout=30)
        subprocess.run([ctl, "--endpoints", ep, "auth", "enable"], check=True,
                       capture_output=True, env=env, timeout=30)
        assert cli.main(["--endpoints", ep, "range", "foo"]) == exitcodes.EXIT_AUTH
        assert "requires authentication" in capsys.readouterr().err
        assert cli.main(["--endpoints", ep, "--user", "root:wrong", "range", "foo"]) == exitcodes.EXIT_AUTH
        assert "authentication failed" in capsys.readouterr().err
        assert cli.main(["--endpoints", ep, "--user", "root:pw", "--total", "50", "--no-progress",
                         "range", "foo"]) == 0
    finally:
        s.stop()


@pytest.mark.timeout(90)
def test_user_against_kvcore_with_auth_enabled(capsys):
    """The same against kvcore with auth enabled (kvcore's own Auth service), with
    two workers: the token is checked by the core whichever worker gets the call,
    and Range, served by the workers when auth is off, goes to the core."""
    ctl = "/usr/bin/etcdctl"
    s = servers.kvcore_server(f"{sys.executable} -m kvcore", workers=2)
    s.env = {"PYTHONPATH": ROOT}
    s.start()
    try:
        assert s.wait_ready(30) is None
        ep = f"127.0.0.1:{s.port}"
        env = dict(os.environ, ETCDCTL_API="3")
        for step in (["user", "add", "root:pw"], ["auth", "enable"], ["user", "add", "ro:ropw"],
                     ["role", "add", "ro"],
                     ["role", "grant-permission", "ro", "read", "", "--prefix"],   # all keys
                     ["user", "grant-role", "ro", "ro"]):
            user = ["--user", "root:pw"] if step[0] != "user" or step[2] != "root:pw" else []
            if step == ["auth", "enable"]:
                user = []
            subprocess.run([ctl, "--endpoints", ep, *user, *step], check=True,
                           capture_output=True, env=env, timeout=30)
        assert cli.main(["--endpoints", ep, "range", "foo"]) == exitcodes.EXIT_AUTH
        assert "requires authentication" in capsys.readouterr().err
        assert cli.main(["--endpoints", ep, "--user", "root:wrong", "range", "foo"]) == exitcodes.EXIT_AUTH
        assert "authentication failed" in capsys.readouterr().err
        for argv in (["range", "foo"], ["range", "foo", "--consistency", "s"],
                     ["put", "--key-space-size", "10"]):
            assert cli.main(["--endpoints", ep, "--user", "root:pw", "--total", "50",
                             "--no-progress", *argv]) == 0, capsys.readouterr().err
        assert cli.main(["--endpoints", ep, "--user", "ro:ropw", "--total", "50", "--no-progress",
                         "range", "foo", "--consistency", "s"]) == 0, capsys.readouterr().err
        # A read-only user's puts are refused: the run reports the permission error.
        assert cli.main(["--endpoints", ep, "--user", "ro:ropw", "--total", "20", "--no-progress",
                         "put"]) == exitcodes.EXIT_AUTH
        assert "permission denied" in capsys.readouterr().err
    finally:
        s.stop()


@pytest.mark.timeout(120)
def test_compare_writes_table_and_chart_and_names_a_missing_side(tmp_path, capsys):
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    out = tmp_path / "cmp"
    rc = cli.main(["compare", "--etcd-bin", ETCD, "--kvcore-cmd", failing, "--rounds", "2",
                   "--layouts", "1x1,2x4", "--scenarios", "put,range-s", "--cell-total", "40",
                   "--out-dir", str(out), "--ready-timeout", "10"])
    assert rc == 0
    md = (out / "report.md").read_text()
    assert "kvcore could not serve" in md and "exited with code 3" in md
    assert "| put | 1/1 |" in md and "| range (serializable) | 2/4 |" in md
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert len(data["cells"]) == 4
    assert all(len(runs) == 2 for c in data["cells"] for runs in c["runs"].values())


def test_server_lost_mid_run_exits_non_zero(capsys):
    res = {"ok": 10, "errors": {"not sent: every connection closed (connection closed by server)": 90}}
    assert runs.exit_code_for(res, False) == exitcodes.EXIT_RUN
    assert "went away" in capsys.readouterr().err
    assert runs.exit_code_for({"ok": 10, "errors": {}}, False) == exitcodes.EXIT_OK
    assert runs.exit_code_for({"ok": 0, "errors": {"Unavailable: x": 3}}, False) == exitcodes.EXIT_ALL_FAILED
    assert runs.exit_code_for(
        {"ok": 0, "errors": {"InvalidArgument: etcdserver: user name is empty": 3}}, False) == exitcodes.EXIT_AUTH
