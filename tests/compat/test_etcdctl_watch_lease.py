"""etcdctl watch and lease commands against kvcore and a real etcd, outputs compared
(normalising lease IDs, which are random, and remaining TTLs, which tick)."""
import re
import subprocess
import time

import pytest

from tests import servers


@pytest.fixture(scope="module", params=["grpcio", pytest.param("native", marks=pytest.mark.native_engine)])
def pair(request, tmp_path_factory):
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp("compat-wl"),
                                 ("--grpc-engine", request.param)) as p:
        yield p


def _watch(srv, *args):
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([servers.ETCDCTL, "--endpoints", srv.endpoint, "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _run_watch_scenario(srv, prefix):
    """Writes, with watchers of several kinds running; returns their outputs."""
    p = prefix
    for i in range(3):
        assert srv.etcdctl("put", f"{p}/a", f"v{i}")[0] == 0
    watchers = [
        _watch(srv, f"{p}/a"),
        _watch(srv, "--prefix", f"{p}/"),
        _watch(srv, "--prefix", f"{p}/", "--prev-kv"),
        _watch(srv, f"{p}/a", "--rev", "1"),          # history from the start
        _watch(srv, f"{p}/a", "--rev", "3", "--prev-kv"),
    ]
    time.sleep(1.0)  # watchers are registered
    srv.etcdctl("put", f"{p}/b", "x")
    srv.etcdctl("put", f"{p}/a", "v3")
    srv.etcdctl("del", f"{p}/", "--prefix")
    srv.etcdctl("txn", input=f'\nput {p}/c 1\nput {p}/d 2\n\n\n')
    time.sleep(1.0)
    outs = []
    for w in watchers:
        w.terminate()
        out, _ = w.communicate(timeout=10)
        outs.append(out)
    return outs


def test_watch_outputs_match(pair):
    kv, et = pair
    got = _run_watch_scenario(kv, "w")
    want = _run_watch_scenario(et, "w")
    assert got == want
    assert all(o for o in got)


def _norm_lease(text, ids):
    for i, lid in enumerate(ids):
        text = text.replace(lid, f"<lease{i}>")
    text = re.sub(r"remaining\(\d+s\)", "remaining(Ns)", text)
    # etcd lists a lease's keys in map order: compare them as a set.
    return re.sub(r"attached keys\(\[([^\]]*)\]\)",
                  lambda m: "attached keys([" + " ".join(sorted(m.group(1).split())) + "])", text)


def _lease_scenario(srv):
    out = []
    rc, o, e = srv.etcdctl("lease", "grant", "60")
    lid = o.split()[1]
    out.append(o)
    rc, o2, _ = srv.etcdctl("lease", "grant", "1")  # below the minimum TTL
    short = o2.split()[1]
    out.append(o2)
    out.append(srv.etcdctl("lease", "revoke", short)[1])
    for args in (("put", "lk1", "v", f"--lease={lid}"), ("put", "lk2", "v", f"--lease={lid}"),
                 ("lease", "timetolive", lid, "--keys"), ("lease", "keep-alive", "--once", lid),
                 ("lease", "list"), ("put", "lk3", "v", "--lease=7b"),
                 ("lease", "revoke", lid), ("get", "lk", "--prefix"),
                 ("lease", "timetolive", lid), ("lease", "revoke", lid)):
        rc, o, e = srv.etcdctl(*args)
        if args[:2] == ("lease", "list"):
            o = "\n".join(sorted(o.splitlines()))  # etcd lists in map order
        out.append(f"{rc}|{o}|{e.strip()}")
    return _norm_lease("\n".join(out), [lid, short]), short


def test_lease_outputs_match(pair):
    kv, et = pair
    got, _ = _lease_scenario(kv)
    want, _ = _lease_scenario(et)
    assert got == want


def test_key_is_gone_after_its_lease_expires(pair):
    kv, _ = pair
    rc, o, _ = kv.etcdctl("lease", "grant", "2")
    lid = o.split()[1]
    assert kv.etcdctl("put", "ttl-key", "v", f"--lease={lid}")[0] == 0
    assert kv.etcdctl("get", "ttl-key", "--print-value-only")[1].strip() == "v"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if kv.etcdctl("get", "ttl-key", "--print-value-only")[1].strip() == "":
            break
        time.sleep(0.25)
    assert kv.etcdctl("get", "ttl-key", "--print-value-only")[1].strip() == ""
    assert "already expired" in kv.etcdctl("lease", "timetolive", lid)[1]
