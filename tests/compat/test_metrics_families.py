"""The metric families of kvcore against the official etcd 3.5.1's, on a single
member and on a 3-member cluster under the same light load: every non-Go family
etcd exposes must be there with etcd's type, help and label names. The table is
printed (pytest -s shows it)."""
from __future__ import annotations

import os

from tests import promscrape, servers

LOAD = (("put", "k1", "v1"), ("put", "k2", "v2"), ("get", "k", "--prefix"),
        ("del", "k1"), ("txn",), ("lease", "grant", "60"), ("get", "k", "--rev=1000"),
        ("member", "list"), ("endpoint", "status"), ("compaction", "2"))
TXN = "value(\"k2\") = \"v2\"\n\nput k3 v3\n\n\n"


def _load(endpoint: str) -> None:
    for cmd in LOAD:
        servers.etcdctl(endpoint, *cmd, input=TXN if cmd == ("txn",) else None)


def _families(endpoint: str) -> dict:
    fams = promscrape.families(promscrape.scrape(f"http://{endpoint}"))
    return {n: f for n, f in fams.items() if not n.startswith("go_")}


def _compare(title: str, etcd: dict, kv: dict) -> list[str]:
    """Prints the table; -> the differences."""
    rows, problems = [], []
    for name in sorted(etcd):
        e, k = etcd[name], kv.get(name)
        if k is None:
            verdict = "MISSING"
        elif k["type"] != e["type"]:
            verdict = f"type {k['type']}"
        elif k["labels"] != e["labels"]:
            verdict = f"labels {sorted(k['labels'])}"
        elif k["help"] != e["help"]:
            verdict = "help differs"
        else:
            verdict = "same"
        if verdict != "same":
            problems.append(f"{name}: etcd {e['type']} {sorted(e['labels'])}; kvcore: {verdict}")
        rows.append((name, e["type"], ",".join(sorted(e["labels"])) or "-", verdict))
    extra = sorted(set(kv) - set(etcd))
    w = max(len(r[0]) for r in rows)
    print(f"\n{title}: {len(etcd)} etcd 3.5.1 families (without go_*), "
          f"{sum(r[3] == 'same' for r in rows)} the same in kvcore; kvcore only: {', '.join(extra) or '-'}")
    print(f"{'family':<{w}}  {'type':<9}  {'labels':<45}  kvcore")
    for name, typ, labels, verdict in rows:
        print(f"{name:<{w}}  {typ:<9}  {labels:<45}  {verdict}")
    return problems


def test_single_member_families_match_etcd_351(tmp_path):
    with servers.kvcore_and_etcd(tmp_path, workers=2) as (kv, _unused):
        et = servers.start_etcd(os.path.join(str(tmp_path), "etcd351.etcd"), binary=servers.ETCD351)
        try:
            _load(kv.endpoint)
            _load(et.endpoint)
            problems = _compare("single member", _families(et.endpoint), _families(kv.endpoint))
        finally:
            et.stop()
    assert not problems, "\n".join(problems)


def test_three_member_families_match_etcd_351(tmp_path):
    kvs = servers.start_cluster(os.path.join(str(tmp_path), "kv"), n=3, workers=1)
    try:
        ets = servers.start_etcd_cluster(os.path.join(str(tmp_path), "etcd"), n=3)
        try:
            _load(servers.endpoints(kvs))
            _load(servers.endpoints(ets))
            # A follower too: its families (no proposals of its own) are what etcd's are.
            problems = []
            for i in (0, 1):
                problems += _compare(f"3 members, member {i}", _families(ets[i].endpoint),
                                     _families(kvs[i].endpoint))
        finally:
            for s in ets:
                s.stop()
    finally:
        for s in kvs:
            s.stop()
    assert not problems, "\n".join(problems)


def test_extensive_metrics_match_etcd_351(tmp_path):
    """--metrics extensive adds the gRPC handling-time histograms, as etcd's."""
    flags = ("--metrics", "extensive")
    kv = servers.start_kvcore(os.path.join(str(tmp_path), "kv.etcd"), workers=2, extra=flags)
    try:
        et = servers.start_etcd(os.path.join(str(tmp_path), "etcd.etcd"), binary=servers.ETCD351,
                                extra=flags)
        try:
            _load(kv.endpoint)
            _load(et.endpoint)
            etcd, ours = _families(et.endpoint), _families(kv.endpoint)
            assert "grpc_server_handling_seconds" in etcd
            problems = _compare("single member, --metrics extensive", etcd, ours)
            text = promscrape.scrape(f"http://{kv.endpoint}")
            put = dict(grpc_method="Put", grpc_service="etcdserverpb.KV", grpc_type="unary")
            puts = sum(1 for cmd in LOAD if cmd[0] == "put")
            assert promscrape.value(text, "grpc_server_handling_seconds_count", **put) == puts
            assert promscrape.total(text, "grpc_server_handled_total", **put) == puts
        finally:
            et.stop()
    finally:
        kv.stop()
    assert not problems, "\n".join(problems)
