"""etcd3-py (PyPI ``etcd3-py`` 0.1.6, the sync client over the JSON gateway) scenarios,
run in a subprocess per server by test_etcd3py.py through harness.run_scenarios.

etcd3-py's import name ``etcd3`` is python-etcd3's too, so it is installed into its own
directory (tests/clients/etcd3py/install.sh) that the test puts first on this
process's path. Nothing of kvcore is imported here."""
from __future__ import annotations

import os
import threading
import time

import etcd3
from etcd3.errors import Etcd3WatchCanceled
from etcd3.models import (EventEventType, RangeRequestSortOrder as Order,
                          RangeRequestSortTarget as Target, authpbPermissionType,
                          etcdserverpbAlarmType)
from etcd3.stateful.lock import EtcdLockAcquireTimeout

from tests.clients.etcd3py_shape import error, outcome, shape
from tests.clients.harness import Norm, plain, scenario_main

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def tls() -> dict:
    """The client certificate and CA when the test runs the servers with TLS
    (ETCD3PY_TLS="ca,cert,key"), as etcd3-py takes them."""
    if not os.environ.get("ETCD3PY_TLS"):
        return {}
    ca, cert, key = os.environ["ETCD3PY_TLS"].split(",")
    return {"protocol": "https", "cert": (cert, key), "verify": ca}


def connect(port, **kw):
    return retry_version_probe(lambda: etcd3.Client(host="127.0.0.1", port=port, timeout=10,
                                                    **tls(), **kw))


def retry_version_probe(make, tries: int = 5):
    """etcd3-py reads GET /version with a fixed 0.3 s timeout when a client is made and
    fails later on a missing attribute when that timed out (a loaded 2-core host
    does that to either server): a bounded retry."""
    for attempt in range(tries):
        try:
            return make()
        except AttributeError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def rev_now(c) -> int:
    return int(c.status().header.revision)


@scenario
def kv(c, n):
    out = {"put": shape(n, c.put("py/a", "1")),
           "put_prev": shape(n, c.put("py/a", "2", prev_kv=True)),
           "get": shape(n, c.range("py/a")),
           "missing": shape(n, c.range("py/none")),
           "serializable": shape(n, c.range("py/a", serializable=True)),
           "ignore_value_missing": outcome(lambda: shape(n, c.put("py/none", "",
                                                                  ignore_value=True))),
           "empty_key": outcome(c.put, "", "v"),
           "unknown_lease": outcome(c.put, "py/l", "v", lease=0x1234),
           "value_and_ignore": outcome(c.put, "py/a", "x", ignore_value=True),
           "ignore_value": shape(n, c.put("py/a", "", ignore_value=True, prev_kv=True))}
    g = c.lease_grant(60)
    c.put("py/leased", "1", lease=g.ID)
    out["ignore_lease"] = shape(n, c.put("py/leased", "2", ignore_lease=True, prev_kv=True))
    out["ignore_lease_and_lease"] = outcome(c.put, "py/leased", "3", lease=g.ID,
                                            ignore_lease=True)
    out["leased"] = shape(n, c.range("py/leased"))
    out["from_key"] = shape(n, c.range("py/b", range_end="\0", keys_only=True))
    t = c.Txn()
    t.If(t.key("py/leased").lease == g.ID).Then(t.range("py/leased"))
    out["txn_lease_compare"] = outcome(lambda: shape(n, t.commit()))
    c.lease_revoke(g.ID)
    out["delete_prev"] = shape(n, c.delete_range("py/a", prev_kv=True))
    out["delete_again"] = shape(n, c.delete_range("py/a"))
    return out


@scenario
def ranges(c, n):
    for k, v in (("c", "3"), ("a", "5"), ("e", "1"), ("b", "4"), ("d", "2")):
        c.put("pyr/" + k, v)
    mid = rev_now(c)
    c.put("pyr/b", "4b")
    c.put("pyr/a", "after")
    c.put("pys", "outside")
    r = lambda **kw: shape(n, c.range("pyr/", prefix=True, **kw))   # noqa: E731
    return {
        "prefix": r(),
        "limit": r(limit=2),
        "value_desc": r(sort_order=Order.DESCEND, sort_target=Target.VALUE),
        "mod_asc_limit": r(sort_order=Order.ASCEND, sort_target=Target.MOD, limit=3),
        "version_desc": r(sort_order=Order.DESCEND, sort_target=Target.VERSION),
        "create_desc": r(sort_order=Order.DESCEND, sort_target=Target.CREATE),
        "at_revision": r(revision=mid),
        "keys_only": r(keys_only=True),
        "count_only": r(count_only=True),
        "range_end": shape(n, c.range("pyr/b", range_end="pyr/d")),
        "all": [kv.key for kv in c.range(all=True).kvs if kv.key.startswith(b"py")],
        "mod_bounds": r(min_mod_revision=mid + 1, max_mod_revision=mid + 2),
        "future": outcome(c.range, "pyr/a", revision=mid + 1000),
        "delete_prefix": shape(n, c.delete_range("pyr/", prefix=True, prev_kv=True)),
    }


@scenario
def txn(c, n):
    c.put("pyt/a", "1")
    c.put("pyt/b", "2")
    t = c.Txn()
    t.If(t.key("pyt/a").value == "1")
    t.If(t.key("pyt/b").version > 0)
    t.If(t.key("pyt/a").mod < 10 ** 9)
    t.If(t.key("pyt/none").create == 0)
    t.Then(t.put("pyt/c", "x")).Then(t.range("pyt/a")).Then(t.delete("pyt/b", prev_kv=True))
    t.Else(t.put("pyt/failed", "y"))
    ok = shape(n, t.commit())
    t = c.Txn()
    t.If(t.key("pyt/a").value != "1")
    t.Then(t.put("pyt/never", "z"))
    t.Else(t.range("pyt/", prefix=True)).Else(t.put("pyt/else", "e", prev_kv=True))
    bad = shape(n, t.commit())
    t = c.Txn()
    t.If(t.key("pyt/", prefix=True).version > 0)
    t.Then(t.put("pyt/d", "1")).Then(t.put("pyt/d", "2"))
    dup = outcome(t.commit)
    empty = shape(n, c.Txn().commit())
    return {"ok": ok, "bad": bad, "dup_put": dup, "empty": empty,
            "after": [kv.key for kv in c.range("pyt/", prefix=True).kvs]}


@scenario
def lease(c, n):
    g = c.lease_grant(30)
    c.put("pyl/1", "x", lease=g.ID)
    c.put("pyl/2", "y", lease=g.ID)
    ttl = c.lease_time_to_live(g.ID, keys=True)
    out = {"grant": shape(n, g), "meta": shape(n, c.range("pyl/1")),
           "ttl": {**shape(n, ttl), "TTL": 25 <= ttl.TTL <= 30},
           "keepalive_once": shape(n, c.lease_keep_alive_once(g.ID)),
           "too_large": outcome(c.lease_grant, 10 ** 10),
           "grant_same_id": outcome(c.lease_grant, 30, g.ID),
           "revoke": shape(n, c.lease_revoke(g.ID))}
    out["after"] = shape(n, c.lease_time_to_live(g.ID, keys=True))
    out["keys_after"] = shape(n, c.range("pyl/", prefix=True))
    out["revoke_again"] = outcome(c.lease_revoke, g.ID)
    out["keepalive_revoked"] = outcome(lambda: shape(n, c.lease_keep_alive_once(g.ID)))
    return out


@scenario
def stateful_lease(c, n):
    """The Lease helper: grant, its keepalive thread refreshing a 2 s lease past its
    TTL, then revoke."""
    ls = c.Lease(ttl=2)
    ls.grant()
    c.put("pysl/k", "v", lease=ls.ID)
    ls.keepalive()
    time.sleep(3.5)          # past the TTL: only the keepalive thread keeps the key
    # (Not its jammed(): a refresh older than TTL/4, 0.5 s here, which is timing.)
    out = {"alive": ls.alive(), "key_kept": c.range("pysl/k").count,
           "ttl": 0 < ls.ttl() <= 2}
    ls.cancel_keepalive()
    out["revoke"] = shape(n, ls.revoke())
    out["alive_after"] = ls.alive()
    out["ttl_after"] = ls.ttl()
    out["key_after"] = c.range("pysl/k").count
    out["reuse_missing"] = outcome(lambda: c.Lease(5, ID=ls.ID, new=False).grant())
    return out


def _kv(n, kv):
    """A watch event's key-value (etcd3-py keeps it as the decoded JSON)."""
    return {k: (n.rev(v) if k.endswith("_revision") else
                n.id("lease", v) if k == "lease" else plain(v))
            for k, v in kv._data.items() if k not in ("type", "prev_kv")}


def event(n, e):
    return {"type": e.type.value, **_kv(n, e), "prev": _kv(n, e.prev_kv) if e.prev_kv else None}


@scenario
def watch(c, n):
    got, done = [], threading.Event()
    w = c.Watcher(key="pyw/", prefix=True, prev_kv=True)
    _await_watching(c, w)
    n = Norm(rev_now(c))              # after the markers, whose count is timing's

    def on(e):
        got.append(event(n, e))
        if e.type == EventEventType.DELETE and e.key == b"pyw/a":
            done.set()
    w.onEvent("^pyw/[ab]$", on)
    deletes = []
    w.onEvent(lambda e: e.type == EventEventType.DELETE and e.key != b"pyw/marker",
              deletes.append)
    c.put("pyw/a", "1")
    c.put("pyw/a", "2")
    c.put("pyx", "outside")
    c.put("pyw/b", "3")
    c.delete_range("pyw/a")
    arrived = done.wait(15)
    w.stop()
    c.put("pyw/a", "after stop")
    time.sleep(0.3)
    out = {"arrived": arrived, "events": got, "deletes": [d.key for d in deletes],
           "after_stop": len(got)}
    # From a past revision, deletes only, the first event wanted.
    hist = c.Watcher(key="pyw/", prefix=True, start_revision=n.base_rev + 1, no_put=True)
    out["history_once"] = event(n, hist.watch_once(timeout=10))
    # Nothing comes: watch_once gives None after its timeout.
    out["once_timeout"] = c.Watcher(key="pyw/none").watch_once(timeout=1)
    return out


def _await_watching(c, w, timeout=10.0):
    """Starts ``w``'s thread and returns once its stream is open: etcd3-py has no
    "created" hook, so a marker key is written until the watcher saw it."""
    seen = threading.Event()
    w.onEvent("^pyw/marker$", lambda e: seen.set())
    w.runDaemon()
    deadline = time.monotonic() + timeout
    while not seen.is_set() and time.monotonic() < deadline:
        c.put("pyw/marker", "m")
        seen.wait(0.2)
    if not seen.is_set():
        raise AssertionError("the watcher never started")
    c.delete_range("pyw/marker")


@scenario
def lock(c, n):
    a = c.Lock("pylock", lock_ttl=10)
    b = connect(c.port).Lock("pylock", lock_ttl=10)
    out = {"a": a.acquire(timeout=5) is a, "a_acquired": a.is_acquired,
           "holders": a.holders()}
    try:
        b.acquire(timeout=1)
        out["b_held"] = True
    except EtcdLockAcquireTimeout as exc:
        out["b_held"] = type(exc).__name__
    key = c.range("_locks/pylock")
    out["lock_key"] = {"count": key.count, "leased": bool(key.kvs and key.kvs[0].lease)}
    result = {}
    t = threading.Thread(target=lambda: result.update(b=b.acquire(timeout=10) is b))
    t.start()
    time.sleep(0.5)
    a.release()
    t.join(15)
    out["b_after_release"] = result.get("b")
    out["b_acquired"] = b.is_acquired
    b.release()
    out["released"] = c.range("_locks/pylock").count
    # The v3lock service through the gateway (/v3/lock/lock, /v3/lock/unlock).
    g = c.lease_grant(10)
    locked = c.lock("pyv3lock", lease=g.ID)
    out["v3lock"] = shape(n, locked, "lease")
    # The key is name/<lease id in hex>: the id differs between servers.
    out["v3lock"]["key"] = locked.key == b"pyv3lock/%x" % g.ID
    out["v3unlock"] = shape(n, c.unlock(locked.key))
    out["v3lock_missing_lease"] = outcome(c.lock, "pyv3lock", lease=g.ID + 1)
    c.lease_revoke(g.ID)
    return out


@scenario
def maintenance(c, n):
    me = c.status().leader
    c.put("pym/a", "1")
    out = {"status": shape(n, c.status(), "member"),
           "alarms": shape(n, c.alarm_get(0, etcdserverpbAlarmType.NONE), "member"),
           "defragment": shape(n, c.defragment()),
           "hash": shape(n, c.hash()),
           "version": shape(n, c.version()),
           "health": shape(n, c.health()),
           "members": shape(n, c.member_list(), "member")}
    out["nospace_on"] = shape(n, c.alarm_activate(me, etcdserverpbAlarmType.NOSPACE), "member")
    out["listed"] = shape(n, c.alarm_get(0, etcdserverpbAlarmType.NONE), "member")
    out["put_in_alarm"] = outcome(c.put, "pym/b", "2")
    out["nospace_off"] = shape(n, c.alarm_deactivate(me, etcdserverpbAlarmType.NOSPACE), "member")
    out["put_after"] = shape(n, c.put("pym/b", "2"))
    chunks = list(c.snapshot())
    out["snapshot"] = {"chunks": len(chunks) > 0,
                       "size": sum(len(ch.blob) for ch in chunks) > 0,
                       "last_remaining": chunks[-1].remaining_bytes if chunks else None}
    return out


@scenario
def cluster(c, n):
    """Members of a one-member cluster. Not tried: adding one it cannot reach (etcd
    allows that, for restores, and the cluster then has no quorum), and changes that
    reach raft only to be refused at apply (an unknown ID, a peer URL in use): etcd
    3.5.1 sometimes answers those only at its request timeout (tests/compat/
    test_gateway.py); tests/compat/test_strict_reconfig.py has the quorum refusals."""
    return {"members": shape(n, c.member_list(), "member"),
            "add_bad_url": outcome(c.member_add, ["not a url"]),
            "add_no_url": outcome(c.member_add, [])}


@scenario
def compaction(c, n):
    for i in range(5):
        c.put("pyc/k", str(i))
    top = rev_now(c)
    out = {"compact": shape(n, c.compact(top - 2)),
           "read_compacted": outcome(c.range, "pyc/k", revision=top - 3),
           "read_at_compacted": shape(n, c.range("pyc/k", revision=top - 2)),
           "compact_again": outcome(c.compact, top - 3),
           "compact_future": outcome(c.compact, top + 100),
           "compact_physical": shape(n, c.compact(top - 1, physical=True))}
    try:
        w = c.Watcher(key="pyc/k", start_revision=top - 3, max_retries=0)
        out["watch_compacted"] = plain(w.watch_once(timeout=5))
    except Etcd3WatchCanceled as exc:
        # etcd3-py's text names the absolute start revision: made relative.
        text, start = exc.error.rsplit(" ", 1)
        out["watch_compacted"] = {"raised": type(exc).__name__, "error": text,
                                  "start": n.rev(start),
                                  "compact_revision": n.rev(exc.resp.compact_revision)}
    except Exception as exc:
        out["watch_compacted"] = error(exc)
    return out


def _watch_canceled(n, w):
    """What one watch_once gives (1 s): an event, nothing, or the cancel it raised."""
    try:
        return plain(w.watch_once(timeout=1))
    except Etcd3WatchCanceled as exc:
        return {"raised": type(exc).__name__, "error": exc.error,
                "response": shape(n, exc.resp)}


@scenario
def auth(c, n):
    """Users and roles through the library, auth on, a user's token, a denied put, off."""
    port = c.port
    out = {"user_add_root": shape(n, c.user_add("root", "rootpw")),
           "role_add": shape(n, c.role_add("app")),
           "grant": shape(n, c.role_grant_permission(
               "app", "app/", permType=authpbPermissionType.READWRITE, prefix=True)),
           "user_add_app": shape(n, c.user_add("app", "apppw")),
           "user_grant_role": shape(n, c.user_grant_role("app", "app")),
           "grant_root": shape(n, c.user_grant_role("root", "root")),
           "role_get": shape(n, c.role_get("app")),
           "user_get": shape(n, c.user_get("app")),
           "user_list": shape(n, c.user_list()),
           "role_list": shape(n, c.role_list()),
           "missing_user": outcome(c.user_get, "nobody"),
           "duplicate_role": outcome(c.role_add, "app"),
           "enable": shape(n, c.auth_enable())}
    out["anonymous_put"] = outcome(c.put, "app/x", "1")
    app = connect(port, username="app", password="apppw")
    out["app_auth"] = shape(n, app.auth() or app.authenticate("app", "apppw"))
    out["app_put"] = outcome(lambda: shape(n, app.put("app/x", "1")))
    out["app_get"] = outcome(lambda: shape(n, app.range("app/x")))
    out["app_denied"] = outcome(app.put, "other", "no")
    out["app_denied_range"] = outcome(app.range, "other")
    out["app_status"] = outcome(lambda: app.status().version)
    out["app_user_add"] = outcome(app.user_add, "x", "y")
    # What a user without the root role may do outside its keys; streams included.
    out["app_lease"] = outcome(lambda: shape(n, app.lease_grant(10)))
    out["app_members"] = outcome(lambda: len(app.member_list().members))
    out["app_defragment"] = outcome(lambda: shape(n, app.defragment()))
    out["app_hash"] = outcome(lambda: shape(n, app.hash()))
    out["app_alarms"] = outcome(lambda: shape(n, app.alarm_get(0, etcdserverpbAlarmType.NONE)))
    out["app_compact"] = outcome(lambda: shape(n, app.compact(1)))    # no root needed
    t = app.Txn()
    out["app_txn_denied"] = outcome(lambda: shape(n, t.Then(t.put("other", "x")).commit()))
    # Refused with the gateway's stream error body ({"error": {"grpc_code": ...}}),
    # whose dict etcd3-py's error lookup cannot take: TypeError on both.
    out["app_snapshot"] = outcome(lambda: len(list(app.snapshot())) > 0)
    out["app_watch_denied"] = outcome(_watch_canceled, n, app.Watcher(key="other", max_retries=0))
    out["app_watch_own"] = outcome(_watch_canceled, n, app.Watcher(key="app/", prefix=True,
                                                                   max_retries=0))
    out["wrong_password"] = outcome(connect(port).authenticate, "app", "bad")
    out["bad_token"] = outcome(connect(port, token="not-a-token").range, "app/x")
    root = connect(port)
    root.auth("root", "rootpw")
    # etcd3-py sends the key of a revoke as text (etcd 3.3's spec had a string there,
    # 3.4 made it bytes, base64 on the gateway): no server finds that permission.
    out["revoke_perm"] = outcome(root.role_revoke_permission, "app", "app/", prefix=True)
    out["app_after_revoke"] = outcome(lambda: shape(n, app.range("app/x")))
    out["change_password"] = shape(n, root.user_change_password("app", "newpw"))
    out["old_password"] = outcome(connect(port).authenticate, "app", "apppw")
    out["revoke_role"] = shape(n, root.user_revoke_role("app", "app"))
    out["user_delete"] = shape(n, root.user_delete("app"))
    out["role_delete"] = shape(n, root.role_delete("app"))
    out["disable"] = shape(n, root.auth_disable())
    out["anonymous_after"] = outcome(lambda: shape(n, c.range("app/x")))
    out["disable_again"] = outcome(c.auth_disable)
    out["root_delete"] = shape(n, c.user_delete("root"))
    return out


def _run(fn, opts):
    c = connect(opts.port)
    try:
        return fn(c, Norm(rev_now(c)))
    finally:
        c.close()


if __name__ == "__main__":
    scenario_main(SCENARIOS, _run)
