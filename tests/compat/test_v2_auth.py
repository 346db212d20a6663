"""v2 auth (--enable-v2) against etcd 3.4.23's: /v2/auth/{enable,users,roles},
the root user and role, the guest role, role permissions on /v2/keys paths and
Basic auth, compared request by request (status, client headers, bodies, with
indexes as offsets, so the index every auth write takes is compared too); then
the same administration through etcdctl 3.4 in v2 mode, output for output."""
from __future__ import annotations

import json
import os
import subprocess
import time

from tests import servers
from tests.compat import v2auth_session
from tests.httpraw import call

ETCD34 = "/usr/bin/etcd"
ETCDCTL34 = "/usr/bin/etcdctl"


def _pair(tmp_path, kv_extra=(), etcd_extra=()):
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                              extra=("--enable-v2", *kv_extra))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34,
                                extra=("--enable-v2", *etcd_extra))
    except Exception:
        kv.stop()
        raise
    return kv, et


def _compare(got: list, want: list) -> None:
    for g, w in zip(got, want):
        assert g == w, f"\nkvcore {g}\netcd   {w}"
    assert len(got) == len(want)


def _store_stats(port) -> dict:
    return json.loads(call(port, "/v2/stats/store", method="GET")[2])


def _settled_stats(srv, want_sets: int) -> dict:
    """The store counters once the server's own start-up writes are done (etcd 3.4
    keeps its member attributes and cluster version in the v2 store too)."""
    deadline = time.monotonic() + 20
    stats = _store_stats(srv.port)
    while stats["setsSuccess"] < want_sets and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = _store_stats(srv.port)
    return stats


def test_v2_auth_session_matches_etcd_34(tmp_path):
    kv, et = _pair(tmp_path)
    try:
        counts = {}
        for name, srv in (("etcd", et), ("kvcore", kv)):
            before = _settled_stats(srv, 2 if name == "etcd" else 0)
            answers = v2auth_session.normalise(v2auth_session.run(srv.port))
            after = _store_stats(srv.port)
            counts[name] = {k: after[k] - before[k] for k in after}
            if name == "etcd":
                want = answers
            else:
                got = answers
    finally:
        kv.stop()
        et.stop()
    _compare(got, want)
    # The same v2 store requests behind the answers (etcd's auth store reads and
    # writes /2 through its v2 store, counted in /v2/stats/store).
    assert counts["kvcore"] == counts["etcd"]
    assert counts["kvcore"]["getsSuccess"] > 50 and counts["kvcore"]["createSuccess"] > 5


def test_v2_auth_survives_restart(tmp_path):
    """Users, roles and the switch are in the replicated store: after a restart
    the same credentials are needed and still work."""
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, extra=("--enable-v2",))
    try:
        v2auth_session.run(kv.port, [
            ("PUT", "/v2/auth/users/root", b'{"user":"root","password":"rootpw"}', None),
            ("PUT", "/v2/auth/enable", None, None)])
        kv = kv.restart()
        out = v2auth_session.run(kv.port, [
            ("GET", "/v2/auth/enable", None, None),
            ("PUT", "/v2/keys/k", ("form", b"value=v"), "Basic cm9vdDp3cm9uZw=="),
            ("PUT", "/v2/keys/k", ("form", b"value=v"), v2auth_session.ROOT)])
    finally:
        kv.stop()
    assert [(a[3], a[5]) for a in out[:2]] == [
        (200, b'{"enabled":true}\n'),
        (401, b'{"errorCode":110,"message":"The request requires user authentication",'
              b'"cause":"Insufficient credentials","index":0}\n')]
    assert out[2][3] == 201


# etcdctl 3.4 (ETCDCTL_API=2): (arguments, credentials "user:password" or None)
CTL_SESSION = [
    (("user", "add", "root:rootpw"), None),
    (("user", "add", "root:rootpw"), None),
    (("role", "add", "app"), None),
    (("role", "grant", "app", "--path", "/app/*", "--rw"), None),
    (("role", "grant", "app", "--path", "/ro/*", "--read"), None),
    (("role", "revoke", "app", "--path", "/ro/*", "--read"), None),
    (("role", "get", "app"), None),
    (("role", "list",), None),
    (("user", "add", "ann:annpw"), None),
    (("user", "grant", "ann", "--roles", "app"), None),
    (("user", "get", "ann"), None),
    (("user", "list",), None),
    (("auth", "enable",), None),
    (("set", "/app/a", "1"), None),
    (("set", "/app/a", "1"), "ann:annpw"),
    (("get", "/app/a"), "ann:annpw"),
    (("set", "/other", "1"), "ann:annpw"),
    (("set", "/other", "1"), "root:rootpw"),
    (("user", "list",), "ann:annpw"),
    (("user", "revoke", "ann", "--roles", "app"), "root:rootpw"),
    (("set", "/app/a", "2"), "ann:annpw"),
    (("role", "remove", "app"), "root:rootpw"),
    (("user", "remove", "ann"), "root:rootpw"),
    (("auth", "disable",), "root:rootpw"),
    (("ls", "--sort", "/"), None),      # etcd lists a directory in map order
]


def _ctl_session(port) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    out = []
    for args, cred in CTL_SESSION:
        argv = [ETCDCTL34, "--endpoints", f"http://127.0.0.1:{port}"]
        if cred:
            argv += ["--username", cred]
        p = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30,
                           env=env)
        err = p.stderr.replace(f"127.0.0.1:{port}", "<endpoint>")
        out.append((args, cred, p.returncode, p.stdout, err))
    return out


def test_etcdctl_v2_auth_matches_etcd_34(tmp_path):
    kv, et = _pair(tmp_path)
    try:
        want = _ctl_session(et.port)
        got = _ctl_session(kv.port)
    finally:
        kv.stop()
        et.stop()
    _compare(got, want)
    # The session did something: ann was refused outside her role's paths.
    assert any(rc != 0 and cred == "ann:annpw" for _, cred, rc, _, _ in got)


CN_SESSION = [
    ("PUT", "/v2/keys/start", ("form", b"value=s"), None),
    ("PUT", "/v2/auth/users/root", b'{"user":"root","password":"rootpw"}', None),
    ("PUT", "/v2/auth/users/client", b'{"user":"client","password":"pw"}', None),
    ("PUT", "/v2/auth/roles/c", b'{"role":"c","permissions":{"kv":{"read":["/c/*"],'
                                b'"write":["/c/*"]}}}', None),
    ("PUT", "/v2/auth/users/client", b'{"user":"client","grant":["c"]}', None),
    ("PUT", "/v2/auth/enable", None, None),
    ("PUT", "/v2/auth/roles/guest", b'{"role":"guest","revoke":{"kv":{"read":["/*"],'
                                    b'"write":["/*"]}}}', v2auth_session.ROOT),
    ("PUT", "/v2/keys/c/x", ("form", b"value=1"), None),         # the certificate's user
    ("PUT", "/v2/keys/other", ("form", b"value=1"), None),
    ("PUT", "/v2/keys/other", ("form", b"value=1"), v2auth_session.ROOT),
    ("GET", "/v2/auth/users", None, None),                       # client is not root
    ("GET", "/v2/auth/users/client", None, v2auth_session.ROOT),
    ("DELETE", "/v2/auth/enable", None, v2auth_session.ROOT),
]


def test_v2_auth_by_client_certificate_on_grpcio_engine(tmp_path):
    """--client-cert-auth: a request without an Authorization header is the user
    its certificate's CN names, as in etcd 3.4; on the grpcio engine, whose HTTP
    over mutual TLS the native front serves."""
    import ssl

    from tests.compat.test_tls import server_flags
    from tests.tlscerts import make_pki
    pki = make_pki(str(tmp_path / "pki"))
    flags = server_flags(pki, "mtls")
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1, scheme="https",
                              extra=("--enable-v2", "--grpc-engine", "grpcio", *flags))
    try:
        et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=ETCD34, scheme="https",
                                extra=("--enable-v2", *flags))
        try:
            ctx = ssl.create_default_context(cafile=pki.ca)
            ctx.load_cert_chain(pki.client_cert, pki.client_key)
            want = v2auth_session.run(et.port, CN_SESSION, "https", ctx)
            got = v2auth_session.run(kv.port, CN_SESSION, "https", ctx)
        finally:
            et.stop()
    finally:
        kv.stop()
    _compare(v2auth_session.normalise(got), v2auth_session.normalise(want))
    assert [a[3] for a in got[7:11]] == [201, 401, 201, 401]


def test_v2_auth_is_replicated(tmp_path):
    """Users, roles and the switch live in the replicated v2 store: root made on
    one member, auth enabled on another, the guest role closed on a third; every
    member then refuses an unauthenticated read and serves root's."""
    ms = servers.start_cluster(str(tmp_path / "c"), n=3, extra=("--enable-v2",))
    try:
        steps = [(0, "PUT", "/v2/auth/users/root", b'{"user":"root","password":"rootpw"}',
                  None),
                 (1, "PUT", "/v2/auth/enable", None, None),
                 (2, "GET", "/v2/auth/users", None, None),
                 (2, "PUT", "/v2/auth/roles/guest", b'{"role":"guest","revoke":{"kv":'
                                                    b'{"read":["/*"],"write":["/*"]}}}',
                  v2auth_session.ROOT),
                 (2, "PUT", "/v2/keys/x", ("form", b"value=1"), v2auth_session.ROOT)]
        got = []
        deadline = time.monotonic() + 20
        for i, *s in steps:
            status = v2auth_session.run(ms[i].port, [s])[0][3]
            # A member learns of the switch when it applies it (etcd reads it locally
            # too): the unauthenticated read after enabling waits for that.
            while status == 200 and s[0] == "GET" and time.monotonic() < deadline:
                time.sleep(0.1)
                status = v2auth_session.run(ms[i].port, [s])[0][3]
            got.append(status)
        reads = []
        for m in ms:
            while True:
                r = v2auth_session.run(m.port, [("GET", "/v2/keys/x", None, None),
                                                ("GET", "/v2/keys/x", None,
                                                 v2auth_session.ROOT)])
                if [a[3] for a in r] == [401, 200] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            reads.append([a[3] for a in r])
    finally:
        for m in ms:
            m.stop()
    assert got == [201, 200, 401, 200, 201]
    assert reads == [[401, 200]] * 3


def test_v2_auth_checks_read_through_the_log(tmp_path):
    """etcd reads the root user and guest role before enabling, and a user or role
    before updating it, through the log (v2auth's getUser/getRole with quorum, a
    QGET): on a member slow to apply, a user made through another member a moment
    before is found. Member 1 applies each batch 400 ms late (a failpoint)."""
    ms = servers.start_cluster(str(tmp_path / "c"), n=3, extra=("--enable-v2",),
                               member_env={1: {"KVCORE_FAILPOINTS": "apply-before=sleep(400)"}})
    try:
        steps = [(0, "PUT", "/v2/auth/users/root", b'{"user":"root","password":"rootpw"}',
                  None),
                 (1, "PUT", "/v2/auth/enable", None, None),
                 (0, "PUT", "/v2/auth/users/ann", b'{"user":"ann","password":"a"}',
                  v2auth_session.ROOT),
                 (1, "PUT", "/v2/auth/users/ann", b'{"user":"ann","grant":["guest"]}',
                  v2auth_session.ROOT),
                 (0, "PUT", "/v2/auth/roles/ops", b'{"role":"ops"}', v2auth_session.ROOT),
                 (1, "PUT", "/v2/auth/roles/ops", b'{"role":"ops","grant":{"kv":'
                                                  b'{"read":["/ops/*"]}}}',
                  v2auth_session.ROOT)]
        got = [v2auth_session.run(ms[i].port, [s])[0][3] for i, *s in steps]
    finally:
        for m in ms:
            m.stop()
    assert got == [201, 200, 201, 200, 201, 200]
