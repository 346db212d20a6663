"""Migration with `etcdctl make-mirror` (etcd 3.5.1's and Debian's 3.4.23), both ways:
from a loaded etcd 3.5.1 into kvcore and from a loaded kvcore into etcd 3.5.1.

make-mirror copies the source's keys under --prefix at one revision (a paged Get),
then follows a Watch from the next revision, replaying each put and delete (a txn's
events in one destination Txn) under --dest-prefix (default: the same keys) or, with
--no-dest-prefix, at the destination's root. Each run loads the source, starts the
mirror, waits for the initial copy, makes puts, deletes (one key, a prefix) and a txn
during the mirror, then compares the two keyspaces key by key, until equal or a
deadline. Secure variants: the source (or the destination) over TLS with auth on,
make-mirror as a user whose role covers the prefix only.

The mirror prints its count of mirrored keys every 30 seconds only: that comparison
is the slow test at the end."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests import servers
from tests.clients.harness import enable_app_auth
from tests.etcd351 import ETCD as ETCD351, ETCDCTL as ETCDCTL351
from tests.tlscerts import make_pki

ETCDCTL34 = "/usr/bin/etcdctl"
WAIT = 30.0


@dataclass
class Side:
    """A member as make-mirror's source or destination: its URL and etcdctl flags."""
    kind: str
    endpoint: str
    flags: tuple = ()          # global flags to reach it (--cacert, --user)

    def ctl(self, *args, input=None) -> tuple:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        p = subprocess.run([ETCDCTL351, f"--endpoints={self.endpoint}", *self.flags,
                            "--command-timeout=10s", *args], input=input, text=True,
                           capture_output=True, timeout=WAIT, env=env)
        assert p.returncode == 0, f"{self.kind}: etcdctl {args}: {p.stderr}"
        return p.stdout

    def keyspace(self, prefix: str) -> dict:
        doc = json.loads(self.ctl("get", prefix, "--prefix", "-w", "json"))
        return {base64.b64decode(kv["key"]).decode():
                base64.b64decode(kv.get("value", "")).decode() for kv in doc.get("kvs", [])}


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A plain kvcore and etcd 3.5.1, and a TLS one of each with auth on (user app,
    read-write on app/)."""
    pki = make_pki(str(tmp_path_factory.mktemp("pki")))
    tls = ("--cert-file", pki.server_cert, "--key-file", pki.server_key)
    base = tmp_path_factory.mktemp("mirror")
    started = []
    try:
        started += [servers.start_kvcore(str(base / "kv.etcd")),
                    servers.start_etcd(str(base / "et.etcd"), binary=ETCD351),
                    servers.start_kvcore(str(base / "kvs.etcd"), scheme="https", extra=tls,
                                         ctl_args=("--cacert", pki.ca)),
                    servers.start_etcd(str(base / "ets.etcd"), binary=ETCD351,
                                       scheme="https", extra=tls,
                                       ctl_args=("--cacert", pki.ca))]
        for srv in started[2:]:
            # make-mirror learns the source's revision by a Get of the key "foo"
            # (clientv3/mirror/syncer.go, SyncBase), so its user must read "foo" too,
            # on etcd as on kvcore
            enable_app_auth(srv)
            for args in (("role", "add", "mirror-rev"),
                         ("role", "grant-permission", "mirror-rev", "read", "foo"),
                         ("user", "grant-role", "app", "mirror-rev")):
                assert srv.etcdctl("--user", "root:rootpw", *args)[0] == 0, args
        secure = ("--cacert", pki.ca, "--user", "app:apppw")
        yield {"kvcore": Side("kvcore", started[0].endpoint),
               "etcd": Side("etcd", started[1].endpoint),
               "kvcore-secure": Side("kvcore", started[2].endpoint, secure),
               "etcd-secure": Side("etcd", started[3].endpoint, secure)}
    finally:
        for srv in started:
            srv.stop()


def _dest_flags(dst: Side) -> list:
    """The destination's flags, in make-mirror's --dest-* names."""
    out, it = [], iter(dst.flags)
    for flag in it:
        value = next(it)
        out.append({"--cacert": "--dest-cacert", "--user": "--dest-user"}[flag] + "=" + value)
    return out


def _wait_equal(want, got, mirror: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and mirror.poll() is None:
        if got() == want():
            return
        time.sleep(0.2)
    if got() != want():
        mirror.kill()
        raise AssertionError(f"{what}: {mirror.communicate(timeout=WAIT)}")


def mirror(etcdctl: str, src: Side, dst: Side, prefix: str, dest_prefix=None,
           no_dest_prefix: bool = False, seconds: float = 0.0) -> dict:
    """One migration run (keys under ``prefix``); -> what the mirror printed and did.
    ``seconds``: keep the mirror running that long at least (for its count lines)."""
    target = "" if no_dest_prefix else (prefix if dest_prefix is None else dest_prefix)
    tag = f"{src.kind}-{os.path.basename(os.path.dirname(etcdctl))}-{len(dst.flags)}"
    src_pre, dst_pre = f"{prefix}{tag}-", f"{target}{tag}-"
    # 60 keys in two txns (etcd's default limit is 128 ops per txn)
    for half in (range(0, 30), range(30, 60)):
        src.ctl("txn", input="\n" + "".join(f"put {src_pre}k{i:03d} v{i}\n" for i in half)
                + "\n\n")
    src_view = lambda: {k[len(src_pre):]: v for k, v in src.keyspace(src_pre).items()}  # noqa
    dst_view = lambda: {k[len(dst_pre):]: v for k, v in dst.keyspace(dst_pre).items()}  # noqa
    argv = [etcdctl, f"--endpoints={src.endpoint}", *src.flags, "make-mirror",
            f"--prefix={prefix}", *_dest_flags(dst), dst.endpoint]
    if no_dest_prefix:
        argv.insert(-1, "--no-dest-prefix")
    elif dest_prefix is not None:
        argv.insert(-1, f"--dest-prefix={dest_prefix}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    started = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        _wait_equal(src_view, dst_view, p, "the initial copy")
        src.ctl("put", f"{src_pre}k000", "changed")
        for i in range(5):
            src.ctl("put", f"{src_pre}new{i}", f"n{i}")
        src.ctl("del", f"{src_pre}k001")
        src.ctl("del", "--prefix", f"{src_pre}k01")
        src.ctl("txn", input=f"\nput {src_pre}txn a\ndel {src_pre}k002\nput {src_pre}k003 t\n\n\n")
        _wait_equal(src_view, dst_view, p, "the changes made during the mirror")
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    finally:
        p.terminate()
        out, err = p.communicate(timeout=WAIT)
    return {"keys": len(dst_view()), "equal": dst_view() == src_view(),
            "stdout": out, "stderr": err}


@pytest.mark.parametrize("etcdctl", [ETCDCTL351, ETCDCTL34], ids=["etcdctl-3.5.1",
                                                                    "etcdctl-3.4.23"])
def test_mirror_both_ways_with_dest_prefix(members, etcdctl):
    into_kv = mirror(etcdctl, members["etcd"], members["kvcore"], "src/", "dst/")
    into_etcd = mirror(etcdctl, members["kvcore"], members["etcd"], "src/", "dst/")
    # 60 loaded, 5 new, 1 + 10 + 1 deleted, 1 from the txn
    assert into_kv == {"keys": 54, "equal": True, "stdout": "", "stderr": ""}
    assert into_etcd == into_kv


def test_mirror_without_dest_prefix_and_to_the_same_keys(members):
    a = mirror(ETCDCTL351, members["etcd"], members["kvcore"], "nodest/", no_dest_prefix=True)
    b = mirror(ETCDCTL351, members["kvcore"], members["etcd"], "nodest/", no_dest_prefix=True)
    c = mirror(ETCDCTL34, members["etcd"], members["kvcore"], "same/")
    d = mirror(ETCDCTL34, members["kvcore"], members["etcd"], "same/")
    assert a == b == c == d == {"keys": 54, "equal": True, "stdout": "", "stderr": ""}


def test_mirror_of_a_loaded_keyspace(members):
    """1,200 keys of 100 bytes: the initial copy reads them in the syncer's pages of
    1,000 (at one revision); every key arrives, both ways."""
    for src, dst in ((members["etcd"], members["kvcore"]), (members["kvcore"], members["etcd"])):
        for j in range(10):
            src.ctl("txn", input="\n" + "".join(f"put load/{src.kind}/{j:02d}{i:03d} {'v' * 100}\n"
                                                for i in range(120)) + "\n\n")
        run = mirror(ETCDCTL351, src, dst, f"load/{src.kind}/", f"loaded/{src.kind}/")
        assert run == {"keys": 54, "equal": True, "stdout": "", "stderr": ""}
        strip = lambda d, n: {k[n:]: v for k, v in d.items()}  # noqa: E731
        want = strip(src.keyspace(f"load/{src.kind}/"), len(f"load/{src.kind}/"))
        assert len(want) == 1254
        assert strip(dst.keyspace(f"loaded/{src.kind}/"), len(f"loaded/{src.kind}/")) == want


@pytest.mark.parametrize("etcdctl", [ETCDCTL351, ETCDCTL34], ids=["etcdctl-3.5.1",
                                                                    "etcdctl-3.4.23"])
def test_mirror_over_tls_with_auth(members, etcdctl):
    """From a TLS source with auth (as a user limited to app/) into a plain member of
    the other kind, and from a plain member into a TLS destination with auth."""
    runs = [mirror(etcdctl, members["kvcore-secure"], members["etcd"], "app/", "copy/"),
            mirror(etcdctl, members["etcd-secure"], members["kvcore"], "app/", "copy/")]
    if etcdctl == ETCDCTL351:   # --dest-user is new in 3.5 (3.4.23's usage has none)
        runs += [mirror(etcdctl, members["kvcore"], members["etcd-secure"], "src/", "app/"),
                 mirror(etcdctl, members["etcd"], members["kvcore-secure"], "src/", "app/")]
    assert runs == [{"keys": 54, "equal": True, "stdout": "", "stderr": ""}] * len(runs)


def test_mirror_outside_the_users_permission_fails_alike(members):
    """make-mirror as app of keys app may not read: etcd's permission error, from the
    initial Get."""
    def refused(src: Side, dst: Side) -> tuple:
        p = subprocess.run([ETCDCTL351, f"--endpoints={src.endpoint}", *src.flags,
                            "make-mirror", "--prefix=other/", dst.endpoint],
                           capture_output=True, text=True, timeout=WAIT)
        return p.returncode, p.stdout, [l for l in p.stderr.splitlines()
                                        if not l.startswith('{"level"')]
    kv = refused(members["kvcore-secure"], members["etcd"])
    assert kv == (1, "", ["Error: etcdserver: permission denied"])
    assert kv == refused(members["etcd-secure"], members["kvcore"])


def test_wide_delete_ends_the_mirror_alike(members):
    """make-mirror replays one source revision as one destination Txn: a delete of 200
    keys is 200 ops, over the destination's --max-txn-ops (128), so the mirror exits
    with the destination's refusal and the keys stay there, whichever way it runs."""
    outs = []
    for src, dst in ((members["etcd"], members["kvcore"]), (members["kvcore"], members["etcd"])):
        pre = f"wide/{src.kind}/"
        p = subprocess.Popen([ETCDCTL351, f"--endpoints={src.endpoint}", "make-mirror",
                              f"--prefix={pre}", dst.endpoint], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for j in range(2):
                src.ctl("txn", input="\n" + "".join(f"put {pre}{j}{i:03d} v\n" for i in range(100))
                        + "\n\n")
            _wait_equal(lambda: 200, lambda: len(dst.keyspace(pre)), p, "the puts")
            src.ctl("del", "--prefix", pre)
            out, err = p.communicate(timeout=WAIT)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        outs.append((p.returncode, out, [l for l in err.splitlines() if l.startswith("Error")],
                     len(dst.keyspace(pre))))
    assert outs[0] == (1, "", ["Error: etcdserver: too many operations in txn request"], 200)
    assert outs[0] == outs[1]


@pytest.mark.slow
def test_mirror_prints_the_same_counts(members):
    """The count line make-mirror prints every 30 s: what it mirrored so far."""
    into_kv = mirror(ETCDCTL351, members["etcd"], members["kvcore"], "count/", "counted/",
                     seconds=32)
    into_etcd = mirror(ETCDCTL351, members["kvcore"], members["etcd"], "count/", "counted/",
                       seconds=32)
    assert into_kv["stdout"].split() and into_kv["stdout"] == into_etcd["stdout"]
    assert into_kv["equal"] and into_etcd["equal"]
