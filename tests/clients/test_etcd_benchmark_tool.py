"""etcd's own load tool, `benchmark` (etcd 3.4.23's tools/benchmark, built from Debian's
etcd source by tests/clients/etcd_benchmark/build.sh, which tools/setup.sh runs),
against kvcore and etcd 3.5.1 side by side, one member and three.

Each subcommand but mvcc (local to etcd's own store) runs a small bounded pass on both
servers with the same flags; what the tool reports must be the same: exit code 0, its
error summary (none, or the same errors the same number of times), the number of
successful requests per summary (the histogram's counts) and the watch tools' event
counts. The tool's timings are printed, never compared (bench/ and docs/decisions.md
hold figures). 3.4's tool has no txn-mixed (added in 3.5). Without Go or the source
the build fails and so do the tests.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

import pytest

from tests import servers
from tests.clients.harness import kvcore_and_etcd351

BUILD = os.path.join(os.path.dirname(__file__), "etcd_benchmark", "build.sh")
CLIENTS = ("--conns", "2", "--clients", "6")

# name -> (the tool's arguments, {summary: successful requests expected});
# "main" is a subcommand's one unnamed summary. Small totals: the host is shared.
PASS = {
    "put": (["put", "--total", "300", "--key-size", "8", "--val-size", "16",
             "--key-space-size", "50"], {"main": 300}),
    "put-sequential": (["put", "--total", "200", "--sequential-keys",
                        "--key-space-size", "200"], {"main": 200}),
    "range-linearizable": (["range", "k", "--total", "300"], {"main": 300}),
    "range-serializable": (["range", "k", "--total", "300", "--consistency", "s"],
                           {"main": 300}),
    "range-interval": (["range", "a", "z", "--total", "100"], {"main": 100}),
    "txn-put": (["txn-put", "--total", "200", "--txn-ops", "4", "--key-space-size", "20"],
                {"main": 200}),
    # 4 streams x 10 watchers over 5 keys; 50 puts reach 8 watchers each.
    "watch": (["watch", "--streams", "4", "--watch-per-stream", "10",
               "--watched-key-total", "5", "--key-space-size", "5", "--sequential-keys",
               "--put-total", "50", "--put-rate", "2000"],
              {"Watch creation summary": 40, "Watch events received summary": 400}),
    # Ends only once each of 50 watchers from an old revision saw its 8 events; the
    # serializable gets it counts meanwhile depend on timing, so only errors count.
    "watch-get": (["watch-get", "--watchers", "50", "--streams", "2", "--events", "8"],
                  None),
    # 50 puts, each seen by the 6 clients' watchers.
    "watch-latency": (["watch-latency", "--total", "50", "--put-rate", "500"],
                      {"main": 300}),
    "lease-keepalive": (["lease-keepalive", "--total", "300"], {"main": 300}),
    "stm-repeatable-reads": (["stm", "--total", "100", "--keys", "20",
                              "--keys-per-txn", "2"], {"main": 100}),
    "stm-serializable": (["stm", "--total", "60", "--keys", "20", "--keys-per-txn", "2",
                          "--isolation", "s"], {"main": 60}),
    "stm-snapshot": (["stm", "--total", "60", "--keys", "20", "--keys-per-txn", "2",
                      "--isolation", "ss"], {"main": 60}),
    "stm-read-committed": (["stm", "--total", "60", "--keys", "20", "--keys-per-txn", "2",
                            "--isolation", "c"], {"main": 60}),
    "stm-lock-client": (["stm", "--total", "30", "--keys", "5", "--stm-locker",
                         "lock-client"], {"main": 30}),
    "stm-lock-rpc": (["stm", "--total", "30", "--keys", "5", "--stm-locker", "lock-rpc"],
                     {"main": 30}),
}
# Requests etcd refuses: the tool's error summary names etcd's words, per request.
REFUSED = {
    "too-many-txn-ops": (["txn-put", "--total", "4", "--txn-ops", "129",
                          "--key-space-size", "1000"],
                         {"etcdserver: too many operations in txn request": 4}),
    "request-too-large": (["put", "--total", "3", "--val-size", "1600000"],
                          {"etcdserver: request is too large": 3}),
    "empty-range-key": (["range", "", "--total", "3"], {"etcdserver: key is not provided": 3}),
}


@dataclass
class Report:
    rc: object
    counts: dict = field(default_factory=dict)   # summary -> successful requests
    errors: dict = field(default_factory=dict)   # the error summary: message -> count
    extra: dict = field(default_factory=dict)    # HashKV summary fields
    stderr: str = ""


def parse(out: str) -> tuple[dict, dict, dict]:
    counts: dict = {}
    errors: dict = {}
    extra: dict = {}
    section = "main"
    for line in out.splitlines():
        if m := re.match(r"^(\S.* summary):$", line):
            section = m.group(1)
        elif m := re.match(r"^\s+[0-9.e+-]+ \[(\d+)\]\t\|", line):
            counts[section] = counts.get(section, 0) + int(m.group(1))
        elif m := re.match(r"^\s+\[(\d+)\]\t(.*)$", line):
            errors[m.group(2)] = errors.get(m.group(2), 0) + int(m.group(1))
        elif m := re.match(r"^\t(HashKV): (\d+)$", line):
            extra[m.group(1)] = int(m.group(2))
    return counts, errors, extra


def run(tool: str, endpoints: str, args: list, flags: tuple = CLIENTS,
        timeout: float = 60) -> Report:
    try:
        p = subprocess.run([tool, "--endpoints", endpoints, *flags, *args],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return Report("timeout", stderr=str(e.stderr or "")[-2000:])
    counts, errors, extra = parse(p.stdout)
    err = "\n".join(l for l in p.stderr.splitlines()
                    if not l.startswith(("INFO:", "WARNING:", '{"level"')))
    return Report(p.returncode, counts, errors, extra, err[-2000:])


@pytest.fixture(scope="module")
def tool() -> str:
    p = subprocess.run([BUILD], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"building etcd's benchmark tool failed:\n{p.stderr[-3000:]}"
    return p.stdout.strip()


def side_by_side(tool, kv_eps: str, etcd_eps: str, passes: dict,
                 flags: tuple = CLIENTS) -> None:
    """Each pass on kvcore then etcd; all differences reported together."""
    bad = []
    for name, (args, want) in passes.items():
        kv, et = (run(tool, eps, args, flags) for eps in (kv_eps, etcd_eps))
        if et.rc != 0 or et.errors or (want is not None and et.counts != want):
            bad.append(f"{name}: etcd 3.5.1 itself reported {et}")
        elif (kv.rc, kv.errors) != (0, {}) or (want is not None and kv.counts != et.counts):
            bad.append(f"{name}: kvcore {kv}\n   etcd 3.5.1 {et}")
    assert not bad, "\n".join(bad)


def test_one_member(tool, tmp_path):
    with kvcore_and_etcd351(tmp_path) as (kv, et):
        # First, on empty stores: one client writing the same keys in the same order
        # with empty values leaves the same history, so HashKV (the tool's
        # --check-hashkv) must match etcd's number.
        args = ["put", "--total", "100", "--sequential-keys", "--key-space-size", "30",
                "--val-size", "0", "--check-hashkv"]
        one = ("--conns", "1", "--clients", "1")
        kvr, etr = run(tool, kv.endpoint, args, one), run(tool, et.endpoint, args, one)
        assert (etr.rc, etr.counts, etr.errors) == (0, {"main": 100}, {}), etr
        assert (kvr.rc, kvr.counts, kvr.errors, kvr.extra) == \
            (0, etr.counts, {}, etr.extra), f"kvcore {kvr}\netcd 3.5.1 {etr}"
        side_by_side(tool, kv.endpoint, et.endpoint, PASS)


def test_refused_requests_fill_the_same_error_summary(tool, tmp_path):
    with kvcore_and_etcd351(tmp_path) as (kv, et):
        for name, (args, want) in REFUSED.items():
            kvr, etr = run(tool, kv.endpoint, args), run(tool, et.endpoint, args)
            assert (etr.rc, etr.counts, etr.errors) == (0, {}, want), f"{name}: etcd {etr}"
            assert (kvr.rc, kvr.counts, kvr.errors) == (0, {}, want), \
                f"{name}: kvcore {kvr}\netcd 3.5.1 {etr}"


# With auth on, as a user whose role may only read: writes are refused per request.
READ_ONLY = {
    "put": (["put", "--total", "5"], {}, {"etcdserver: permission denied": 5}),
    "txn-put": (["txn-put", "--total", "5"], {}, {"etcdserver: permission denied": 5}),
    "range": (["range", "k", "--total", "5"], {"main": 5}, {}),
    "lease-keepalive": (["lease-keepalive", "--total", "5"], {"main": 5}, {}),
}


def test_a_read_only_user_gets_the_same_answers(tool, tmp_path):
    with kvcore_and_etcd351(tmp_path) as (kv, et):
        for srv in (kv, et):
            for cmd in (("user", "add", "root:rootpw"), ("user", "add", "reader:pw"),
                        ("role", "add", "ro"),
                        ("role", "grant-permission", "ro", "read", "--from-key", ""),
                        ("user", "grant-role", "reader", "ro"), ("auth", "enable")):
                rc, out, err = srv.etcdctl(*cmd)
                assert rc == 0, f"{srv.kind}: etcdctl {cmd}: {err}"
        # One client: clientv3 3.4 authenticates (bcrypt) for each stream it opens.
        flags = ("--clients", "1", "--user", "reader:pw")
        for name, (args, counts, errors) in READ_ONLY.items():
            kvr, etr = run(tool, kv.endpoint, args, flags), run(tool, et.endpoint, args, flags)
            assert (etr.rc, etr.counts, etr.errors) == (0, counts, errors), \
                f"{name}: etcd {etr}"
            assert (kvr.rc, kvr.counts, kvr.errors) == (0, counts, errors), \
                f"{name}: kvcore {kvr}\netcd 3.5.1 {etr}"


CLUSTER_PASS = {k: PASS[k] for k in (
    "put", "range-linearizable", "range-serializable", "txn-put", "watch",
    "watch-latency", "lease-keepalive", "stm-repeatable-reads", "stm-lock-rpc")}


def test_three_members(tool, tmp_path):
    kvs = servers.start_cluster(str(tmp_path / "kvcore"), n=3)
    try:
        ets = servers.start_etcd_cluster(str(tmp_path / "etcd"), n=3)
        try:
            kv_eps, et_eps = servers.endpoints(kvs), servers.endpoints(ets)
            # One connection to each member, and then only to the leader (the tool
            # finds it from MemberList's client URLs and Status's leader).
            side_by_side(tool, kv_eps, et_eps, CLUSTER_PASS,
                         ("--conns", "3", "--clients", "6"))
            side_by_side(tool, kv_eps, et_eps, {k: PASS[k] for k in ("put", "watch")},
                         ("--conns", "2", "--clients", "6", "--target-leader"))
        finally:
            for s in ets:
                s.stop()
    finally:
        for s in kvs:
            s.stop()
