"""The shared harness of the client-library tests: the same scenario against a kvcore
member and the official etcd 3.5.1, and the normalisation of what must differ.

A scenario is a function of one server that returns plain data (what the library
handed back); the tests run it on both and compare. Only values that cannot be equal
between two clusters are replaced: ids (lease, member, cluster, watch), raft terms and
indexes, and absolute revisions (reported relative to the scenario's start, so a
scenario failing on one side does not shift the next one's numbers).

The gRPC libraries (python-etcd3, aetcd) ship their own generated etcd stubs, which
cannot share a process with kvcore's (the same proto symbols in protobuf's default
pool: "duplicate symbol 'authpb.UserAddOptions'"), so their scenarios run in a
subprocess (``scenario_main`` there, ``run_scenarios`` here) that prints each
scenario's result as JSON. This module imports nothing of kvcore at import time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Norm:
    """Stable stand-ins for values that differ between two clusters."""

    def __init__(self, base_rev: int = 0):
        self.base_rev = base_rev
        self._ids: dict = {}

    def rev(self, r) -> int:
        """A revision relative to the scenario's start (0 stays 0: "none")."""
        r = int(r)
        return r - self.base_rev if r else 0

    def id(self, kind: str, value) -> str:
        """``<kind#n>``, numbered in order of first appearance (same value, same token)."""
        key = (kind, str(value))
        if key not in self._ids:
            n = sum(1 for k in self._ids if k[0] == kind) + 1
            self._ids[key] = f"<{kind}#{n}>"
        return self._ids[key]


def error(exc: BaseException) -> dict:
    """What a client raised, comparable across servers: its type, and the gRPC code
    and message when it carries them (python-etcd3 and aetcd keep the RpcError)."""
    out = {"raised": type(exc).__name__}
    cause = exc if hasattr(exc, "code") and callable(getattr(exc, "code")) else exc.__context__
    if cause is not None and callable(getattr(cause, "code", None)):
        out["code"] = str(cause.code())
        out["details"] = cause.details()
    return out


@contextlib.contextmanager
def kvcore_and_etcd351(base, extra: tuple = (), workers: int = 2, scheme: str = "http",
                       ctl_args: tuple = ()):
    """A fresh kvcore member and a fresh etcd 3.5.1, both single-member on 127.0.0.1
    with the same ``extra`` flags; (kvcore, etcd). A missing etcd 3.5.1 fails here
    (no skip). ``scheme``/``ctl_args`` as for tests/servers.py's start_kvcore."""
    from tests import etcd351, servers   # not at import: keeps kvcore out of subprocesses
    os.makedirs(str(base), exist_ok=True)
    kv = servers.start_kvcore(os.path.join(str(base), "kv.etcd"), workers=workers,
                              extra=extra, scheme=scheme, ctl_args=ctl_args)
    try:
        et = servers.start_etcd(os.path.join(str(base), "etcd.etcd"), binary=etcd351.ETCD,
                                extra=extra, scheme=scheme, ctl_args=ctl_args)
    except BaseException:
        kv.stop()
        raise
    try:
        yield kv, et
    finally:
        kv.stop()
        et.stop()


def same(results: dict) -> None:
    """Asserts kvcore's result equals etcd's, showing both when not."""
    kv, et = results["kvcore"], results["etcd"]
    assert kv == et, f"\nkvcore: {kv!r}\netcd:   {et!r}"


def plain(obj):
    """JSON-able: bytes as tagged text, tuples as lists, an object a scenario did not
    pick apart as its kind and key."""
    if isinstance(obj, bytes):
        return "b:" + obj.decode("utf-8", "backslashreplace")
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return {"object": type(obj).__name__, "key": plain(getattr(obj, "key", None))}


def scenario_main(scenarios: dict, run, argv=None) -> None:
    """The subprocess side: ``--port P --work DIR [--ca CA] [--user U] NAME...``;
    ``run(name, opts)`` runs one scenario and returns its result. Prints
    {name: result or {"crash": traceback}} as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--user")       # with the password "rootpw"
    ap.add_argument("names", nargs="+")
    opts = ap.parse_args(argv)
    results = {}
    for name in opts.names:
        try:
            results[name] = plain(run(scenarios[name], opts))
        except Exception:
            results[name] = {"crash": traceback.format_exc()}
    json.dump(results, sys.stdout)
    sys.stdout.flush()


def run_scenarios(module: str, srv, work: str, names, *opts, env_extra=None) -> dict:
    """The test side: runs ``python -m module`` against one server; its results."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    os.makedirs(work, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", module, "--port", str(srv.port), "--work", work,
                        *opts, *names], capture_output=True, text=True, env=env,
                       timeout=240, cwd=ROOT)
    assert p.returncode == 0, f"{srv.kind}: {module} exited {p.returncode}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout)


def compare_scenario(results: dict, name: str) -> None:
    """Asserts neither server's run of ``name`` crashed and both gave the same."""
    got = {kind: results[kind][name] for kind in ("kvcore", "etcd")}
    for kind, r in got.items():
        assert not (isinstance(r, dict) and "crash" in r), f"{kind}: {r['crash']}"
    same(got)


def enable_app_auth(srv):
    """Users root and app (read-write on app/), then auth on: with the real etcdctl."""
    for args in (("user", "add", "root", "--new-user-password=rootpw"),
                 ("role", "add", "app"),
                 ("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true"),
                 ("user", "add", "app", "--new-user-password=apppw"),
                 ("user", "grant-role", "app", "app"),
                 ("auth", "enable")):
        rc, out, err = srv.etcdctl(*args)
        assert rc == 0, f"{srv.kind}: etcdctl {' '.join(args)}: {err}"
