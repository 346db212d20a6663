"""The Node.js `etcd3` client (Microsoft's, on @grpc/grpc-js) against kvcore and against
the official etcd 3.5.1, outputs compared step by step.

grpc-js has its own HTTP/2 stack (keepalive pings, flow control, stream resets on
cancel), so this drives kvcore's native gRPC engine the way Node services will.
tests/clients/node/driver.js runs named scenarios and prints one JSON line per step;
here both servers get the same scenarios on fresh data, so revisions must match
exactly; only what each server picks for itself (cluster, member and lease ids, ports)
is replaced by a placeholder, consistently, so equal ids stay equal. tools/setup.sh
installs the pinned client (`npm ci` in tests/clients/node); without it the tests fail.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers, tlscerts
from tests.etcd351 import ETCD as ETCD351

NODE_DIR = os.path.join(os.path.dirname(__file__), "node")
DRIVER = os.path.join(NODE_DIR, "driver.js")
# Fields whose values each server chooses itself (ids), and the step results that are ids.
ID_FIELDS = {"cluster_id", "member_id", "ID", "leader", "lease"}
REVISION_FIELDS = {"revision", "create_revision", "mod_revision", "compact_revision"}


def _config(srv: servers.Server, **extra) -> str:
    scheme = "https" if srv.scheme == "https" else "http"
    return json.dumps({"endpoint": f"{scheme}://127.0.0.1:{srv.port}", **extra})


def _start_driver(srv, scenarios, stdin=None, **extra) -> subprocess.Popen:
    assert os.path.isdir(os.path.join(NODE_DIR, "node_modules", "etcd3")), \
        "etcd3 npm package missing: run tools/setup.sh (npm ci in tests/clients/node)"
    return subprocess.Popen(["node", DRIVER, _config(srv, **extra), *scenarios],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "NODE_NO_WARNINGS": "1"})


def _finish(proc: subprocess.Popen, head: list, timeout: float = 40, who: str = "") -> list[dict]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"driver on {who} still running after {timeout}s; its last steps:\n"
                             + "\n".join(out.splitlines()[-3:]) + f"\n{err[-2000:]}")
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{err[-3000:]}"
    return head + [json.loads(line) for line in out.splitlines()]


def drive_both(pair, scenarios, **extra) -> tuple[list, list]:
    """Runs the scenarios against both servers at once -> (kvcore lines, etcd lines)."""
    procs = [_start_driver(srv, scenarios, **extra) for srv in pair]
    return tuple(_finish(p, [], who=srv.kind) for p, srv in zip(procs, pair))


class Normaliser:
    """Replaces each server-chosen id by `<id N>` (N in order of first appearance) and
    the server's ports by `<port>`/`<peer port>`, also inside strings (error messages);
    revisions become relative to the scenario's first (its "base revision" line)."""

    def __init__(self, srv: servers.Server):
        self.ids: dict[str, str] = {}
        self.ports = {str(srv.port): "<port>", str(srv.peer_port): "<peer port>"}
        self.base = 0

    def line(self, x: dict) -> dict:
        if x["step"] == "base revision" and "result" in x:
            self.base = int(x["result"]["base"])
            return {**x, "result": "<base>"}
        return self(x)

    def _text(self, s: str) -> str:
        for port, name in self.ports.items():
            s = s.replace(f":{port}", f":{name}")
        for raw, token in self.ids.items():
            s = re.sub(rf"\b{raw}\b", token, s)
        return s

    def __call__(self, value, field=None):
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, field) for v in value]
        if field in ID_FIELDS and isinstance(value, str) and value not in ("0", ""):
            return self.ids.setdefault(value, f"<id {len(self.ids) + 1}>")
        if field in REVISION_FIELDS and isinstance(value, str) and value.isdigit() \
                and int(value) > 0:
            return f"base{int(value) - self.base:+d}"
        if isinstance(value, str):
            return self._text(value)
        return value


def assert_same(pair, kv_lines, et_lines):
    kv_norm, et_norm = Normaliser(pair[0]), Normaliser(pair[1])
    kv = [kv_norm.line(x) for x in kv_lines]
    et = [et_norm.line(x) for x in et_lines]
    for a, b in zip(kv, et):
        assert (a["scenario"], a["step"]) == (b["scenario"], b["step"]), (a, b)
        assert a == b, f"kvcore and etcd 3.5.1 differ at {a['scenario']}/{a['step']}"
    assert len(kv) == len(et), (kv[len(et):], et[len(kv):])
    return kv


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("node-etcd3")
    kv = servers.start_kvcore(str(base / "kv.etcd"), workers=2)
    try:
        et = servers.start_etcd(str(base / "etcd.etcd"), binary=ETCD351)
    except BaseException:
        kv.stop()
        raise
    yield kv, et
    kv.stop()
    et.stop()


def _steps(lines, scenario):
    return {x["step"]: x for x in lines if x["scenario"] == scenario}


# "transport" drives the native engine's own limits and encodings (grpcio, the
# pure-Python mode's engine, words its size errors differently and takes deflate).
@pytest.mark.parametrize("scenario", [
    "kv", "txn", "watch", "watch-more", "lock", "election", "stm-namespace",
    pytest.param("transport", marks=pytest.mark.native_engine), "stream-ends", "edges"])
def test_scenario_matches_etcd(pair, scenario):
    kv, et = drive_both(pair, [scenario])
    lines = assert_same(pair, kv, et)
    assert not any(x["step"] == "unexpected" for x in lines), lines


def test_lease_keepalive_revoke_and_lost(pair):
    kv, et = drive_both(pair, ["lease"])
    steps = _steps(assert_same(pair, kv, et), "lease")
    # The shared facts, spelled out (both servers printed the same).
    assert steps["keepalives over 3s"]["result"] == {
        "fired_at_least_2": True, "succeeded_at_least_2": True, "lost": []}
    assert steps["lost event"]["result"] == {"lost": ["EtcdLeaseInvalidError"], "revoked": True}
    assert steps["keepaliveOnce after revoke"]["error"]["class"] == "EtcdLeaseInvalidError"
    assert steps["put on revoked lease"]["error"]["class"] == "EtcdLeaseInvalidError"
    assert steps["key gone after revoke"]["result"] is None


def test_maintenance_status_and_member_list(pair):
    kv, et = drive_both(pair, ["maintenance"])
    steps = _steps(assert_same(pair, kv, et), "maintenance")
    assert steps["status"]["result"]["version"] == "3.5.1"
    assert steps["member list"]["result"]["members"][0]["clientURLs"] == [
        "http://127.0.0.1:<port>"]


def test_client_keepalive_pings_policed_as_etcd(pair):
    """grpc-js pinging every second with a watch open: GOAWAY(ENHANCE_YOUR_CALM,
    "too_many_pings") after three strikes, as grpc-go does under etcd's 5 s
    --grpc-keepalive-min-time; the client says so, reconnects, and the watch goes on."""
    kv, et = drive_both(pair, ["keepalive-pings"])
    steps = _steps(assert_same(pair, kv, et), "keepalive-pings")
    assert steps["watch after pings"]["result"] == {
        "seen": ["ka/1"], "disconnects": ["Error", "EtcdWatchStreamEnded"],
        "told_excess_pings": True}


def _response_headers(srv: servers.Server, encoding: str) -> list[str]:
    """The response header names of one Status call (curl over h2c), trailers apart."""
    proc = subprocess.run(
        ["curl", "-sv", "--http2-prior-knowledge", "-o", "/dev/null",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "-H", f"grpc-encoding: {encoding}", "-H", "grpc-accept-encoding: identity,gzip",
         "--data-binary", "@-", f"http://127.0.0.1:{srv.port}/etcdserverpb.Maintenance/Status"],
        input=b"\0\0\0\0\0", capture_output=True, timeout=30)
    lines = proc.stderr.decode().splitlines()
    head = lines[:lines.index("< ")] if "< " in lines else lines
    return sorted(line[2:].split(":")[0] for line in head if line.startswith("< ") and ":" in line)


@pytest.mark.native_engine
def test_response_headers_let_grpc_js_keep_compressing(pair):
    """grpc-js stops compressing its requests to a server whose answers carry a
    grpc-accept-encoding without its encoding; grpc-go's (etcd's) carry none."""
    kv, et = pair
    assert _response_headers(kv, "identity") == _response_headers(et, "identity") == [
        "content-type"]
    assert "grpc-accept-encoding" not in _response_headers(kv, "gzip")


def _restart_session(srv: servers.Server) -> list[dict]:
    """Watches wr/ and keeps a lease alive over the restart of `srv` (same data dir,
    same port); two keys are written by etcdctl while the client is still
    reconnecting."""
    proc = _start_driver(srv, ["watch-restart"], stdin=subprocess.PIPE)
    head = []
    for line in proc.stdout:
        head.append(json.loads(line))
        if head[-1]["step"] == "await restart":
            break
    else:
        _finish(proc, head, who=srv.kind)
        raise AssertionError(f"driver ended before the restart: {head}")
    srv.restart()
    for key in ("wr/3", "wr/4"):
        code, out, err = servers.etcdctl(srv.endpoint, "put", key, "x")
        assert code == 0, err
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return _finish(proc, head, who=srv.kind)


def test_watch_resumes_after_server_restart(tmp_path):
    base = tmp_path
    kv = servers.start_kvcore(str(base / "kv.etcd"), workers=2)
    et = None
    try:
        et = servers.start_etcd(str(base / "etcd.etcd"), binary=ETCD351)
        with ThreadPoolExecutor(2) as pool:
            kv_lines, et_lines = pool.map(_restart_session, [kv, et])
        steps = _steps(assert_same((kv, et), kv_lines, et_lines), "watch-restart")
    finally:
        kv.stop()
        if et:
            et.stop()
    # Every put once, in order: none lost over the restart, none replayed twice (the
    # lease's key was the first write).
    assert steps["after restart"]["result"] == [
        {"key": f"wr/{i}", "mod_revision": f"base{i + 1:+d}"} for i in range(1, 6)]
    assert steps["lease after restart"]["result"] == {
        "kept_alive_again": True, "lost": [], "key": "v"}


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("node-etcd3-tls")
    pki = tlscerts.make_pki(str(base / "pki"))
    # Client certificates required (the driver shows pki.client_cert, CN "client");
    # simple tokens that lapse after a second idle: the client's re-authentication.
    flags = ("--cert-file", pki.server_cert, "--key-file", pki.server_key,
             "--client-cert-auth", "--trusted-ca-file", pki.ca, "--auth-token-ttl", "1")
    kv = servers.start_kvcore(str(base / "kv.etcd"), workers=2, scheme="https", extra=flags)
    try:
        et = servers.start_etcd(str(base / "etcd.etcd"), binary=ETCD351, scheme="https",
                                extra=flags)
    except BaseException:
        kv.stop()
        raise
    yield kv, et, pki
    kv.stop()
    et.stop()


def test_tls_and_auth(tls_pair):
    """`credentials: {rootCertificate, certChain, privateKey}` over TLS (and a client
    without a certificate refused); then users, roles and auth enabled: the error
    classes the client raises are the same on both servers. A call without a user
    name runs as the certificate's CN, a user that does not exist."""
    kv_srv, et_srv, pki = tls_pair
    kv, et = drive_both((kv_srv, et_srv), ["tls", "auth"], ca=pki.ca, cert=pki.client_cert,
                        key=pki.client_key, root_password="rootpw", token_ttl_wait_ms=2500)
    assert _steps(kv, "tls")["no client certificate"]["result"]["class"] == \
        "GRPCUnavailableError"
    steps = _steps(assert_same((kv_srv, et_srv), kv, et), "auth")
    assert steps["alice get after token expiry"]["result"] == "1"
    # The lapsed token as etcd logs it: dropped by the token keeper, then refused.
    for srv in (kv_srv, et_srv):
        events = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
        assert any(e["msg"] == "deleted a simple token" and e["level"] == "info"
                   and e.get("user-name") == "alice" for e in events), srv.kind
        assert any(e["msg"] == "invalid auth token" and e["level"] == "warn"
                   and "token" in e for e in events), srv.kind
    classes = {name: s["error"]["class"] for name, s in steps.items() if "error" in s}
    assert classes == {
        "create role again": "EtcdRoleExistsError",
        "create alice again": "EtcdUserExistsError",
        "alice add missing role": "EtcdRoleNotFoundError",
        "remove role not granted": "EtcdRoleNotGrantedError",
        "delete missing user": "EtcdUserNotFoundError",
        "unauthenticated get": "EtcdPermissionDeniedError",
        "alice put pub": "EtcdPermissionDeniedError",
        "alice get secret": "EtcdPermissionDeniedError",
        "alice getAll all": "EtcdPermissionDeniedError",
        "alice txn": "EtcdPermissionDeniedError",
        "alice watch secret": "EtcdPermissionDeniedError",
        "alice role list": "EtcdPermissionDeniedError",
        "wrong password": "EtcdAuthenticationFailedError",
        "alice revokes the lease": "EtcdPermissionDeniedError",
        "alice with the old password": "EtcdAuthenticationFailedError",
        "delete writer again": "EtcdRoleNotFoundError",
    }
