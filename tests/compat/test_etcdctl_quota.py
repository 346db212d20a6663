"""The space quota and the NOSPACE alarm, compared with Debian's etcd 3.4.23: the same
etcdctl commands against both, with member IDs normalised."""
from __future__ import annotations

import re

import pytest

from tests import servers

QUOTA = 1024 * 1024
VALUE = "a" * 100_000


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    extra = ("--quota-backend-bytes", str(QUOTA))
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp("compat-quota"), extra, extra) as p:
        yield p


def _norm(text: str, srv) -> str:
    rc, out, _ = srv.etcdctl("endpoint", "status", "-w", "json")
    member = re.search(r'"member_id":(\d+)', out).group(1)
    return text.replace(member, "<member>")


def _scenario(srv) -> list:
    out = []
    failed_at = None
    for i in range(1, 41):
        rc, _, err = srv.etcdctl("put", f"k{i}", VALUE)
        if rc != 0:
            failed_at = i
            out.append(("put over quota", rc, err.strip().splitlines()[-1]))
            break
    assert failed_at is not None and failed_at > 3, "the quota never refused a put"
    for cmd in (("alarm", "list"),
                ("put", "x", "y"),                       # refused while the alarm is raised
                ("get", "k1", "--keys-only"),            # reads still work
                ("del", "k", "--prefix"),                # deletes too
                ("lease", "grant", "100"),               # refused
                ("alarm", "disarm"),
                # Still over quota for a value this big: refused at once. (A tiny put may
                # fit under the quota here, in etcd by the bbolt file's exact size.)
                ("put", "big", VALUE),
                ("alarm", "list"),                       # and the alarm is back
                ("compact", "<current>"),                # makes room
                ("defrag",),
                ("alarm", "disarm"),
                ("alarm", "list"),
                ("put", "x", "y")):                      # accepted again
        if "<current>" in cmd:
            rc, o, _ = srv.etcdctl("get", "k1", "-w", "json")
            cmd = ("compact", re.search(r'"revision":(\d+)', o).group(1))
        rc, o, err = srv.etcdctl(*cmd)
        o = re.sub(r"\[.*\]", "[endpoint]", o)             # defrag's endpoint
        if cmd[0] in ("del", "compact"):
            o = re.sub(r"\d+", "<n>", o)                    # how many puts fitted differs
            cmd = cmd[:1]
        out.append((cmd, rc, _norm(o.strip(), srv),
                    err.strip().splitlines()[-1] if err.strip() else ""))
    return out


def test_nospace_alarm_matches_etcd(pair):
    kv, et = pair
    got, want = _scenario(kv), _scenario(et)
    assert got == want
    # The alarm was really raised, and is really gone.
    assert ("alarm", "list") == got[1][0] and "alarm:NOSPACE" in got[1][2]
    # Disarmed while still over the quota: the next put is refused and re-raises it.
    assert got[7][:2] == (("put", "big", VALUE), 1) and "alarm:NOSPACE" in got[8][2]
    assert got[12][2] == ""
    assert got[13][:3] == (("put", "x", "y"), 0, "OK")


def test_alarm_survives_restart(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), extra=("--quota-backend-bytes", str(QUOTA)))
    try:
        for i in range(40):
            if srv.etcdctl("put", f"k{i}", VALUE)[0] != 0:
                break
        assert "alarm:NOSPACE" in srv.etcdctl("alarm", "list")[1]
        srv.stop()
        srv = srv.restart()
        assert "alarm:NOSPACE" in srv.etcdctl("alarm", "list")[1]
        rc, _, err = srv.etcdctl("put", "x", "y")
        assert rc != 0 and "database space exceeded" in err
        rc, out, _ = srv.etcdctl("endpoint", "status", "-w", "json")
        assert "alarm:NOSPACE" in out
    finally:
        srv.stop()
