"""aetcd (asyncio gRPC, its own stubs) scenarios, run in a subprocess per server by
test_aetcd.py through harness.run_scenarios (its stubs cannot share a process with
kvcore's: harness.py). Each scenario is a coroutine of a connected client."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess

import aetcd

from tests import etcd351
from tests.clients.harness import Norm, error, scenario_main

DEADLINE = 30       # seconds any one scenario may take on one server
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


async def _rev(c) -> int:
    return (await c.put(b"aetcd-rev", b"")).header.revision


async def _outcome(coro):
    try:
        return await coro
    except Exception as exc:
        return error(exc)


def _kv(n, kv):
    if kv is None:
        return None
    return {"key": kv.key, "value": kv.value, "create": n.rev(kv.create_revision),
            "mod": n.rev(kv.mod_revision), "version": kv.version,
            "lease": n.id("lease", kv.lease) if kv.lease else 0}


def _event(n, e):
    return {"kind": str(e.kind), **_kv(n, e.kv), "prev": _kv(n, e.prev_kv)}


@scenario
async def kv(c, n):
    put = await c.put(b"ae/a", b"1")
    prev = await c.put(b"ae/a", b"2", prev_kv=True)
    for k, v in ((b"ae/c", b"3"), (b"ae/b", b"9"), (b"ae/d", b"0")):
        await c.put(k, v)
    return {
        "put": n.rev(put.header.revision), "prev": _kv(n, prev.prev_kv),
        "get": _kv(n, await c.get(b"ae/a")), "missing": await c.get(b"ae/none"),
        "serializable": _kv(n, await c.get(b"ae/a", serializable=True)),
        "prefix": [_kv(n, kv) for kv in await c.get_prefix(b"ae/", sort_order="descend",
                                                            sort_target="value")],
        "range": [_kv(n, kv) for kv in await c.get_range(b"ae/b", b"ae/d",
                                                          sort_order="ascend",
                                                          sort_target="mod")],
        "keys_only": [_kv(n, kv) for kv in await c.get_prefix(b"ae/", keys_only=True)],
        "count": len(await c.get_prefix(b"ae/")),
        "replace": [await c.replace(b"ae/a", b"2", b"3"), await c.replace(b"ae/a", b"2", b"4")],
        "delete": [_kv(n, (await c.delete(b"ae/a", prev_kv=True)).prev_kv),
                   await c.delete(b"ae/a")],
        "delete_range": (await c.delete_range(b"ae/b", b"ae/c")).deleted,
        "delete_prefix": (await c.delete_prefix(b"ae/")).deleted,
        "empty_key": await _outcome(c.put(b"", b"v")),
    }


@scenario
async def txn(c, n):
    t = c.transactions
    await c.put(b"aet/a", b"1")
    ok, resp = await c.transaction(
        compare=[t.value(b"aet/a") == b"1", t.version(b"aet/a") == 1,
                 t.create(b"aet/none") == 0, t.mod(b"aet/a") > 0],
        success=[t.put(b"aet/b", b"2"), t.get(b"aet/a"), t.delete(b"aet/a")],
        failure=[t.put(b"aet/fail", b"x")])
    bad, bresp = await c.transaction(compare=[t.value(b"aet/b") < b"2"],
                                     success=[t.put(b"aet/never", b"z")],
                                     failure=[t.get(b"aet/b")])

    def shape(r):
        if isinstance(r, list):
            return [[v, m.key, n.rev(m.mod_revision)] for v, m in r]
        return type(r).__name__
    return {"ok": ok, "resp": [shape(r) for r in resp], "bad": bad,
            "bresp": [shape(r) for r in bresp],
            "dup": await _outcome(c.transaction(compare=[], success=[
                t.put(b"aet/d", b"1"), t.delete(b"aet/d")], failure=[])),
            "after": [_kv(n, kv) for kv in await c.get_prefix(b"aet/")]}


@scenario
async def lease_keep_alive(c, n):
    lease = await c.lease(20)
    await c.put(b"ael/1", b"x", lease=lease)
    refreshed = [(await lease.refresh()).TTL for _ in range(3)]
    out = {"id": n.id("lease", lease.id), "ttl": lease.ttl, "refreshed": refreshed,
           "remaining": 10 <= await lease.remaining_ttl() <= 20,
           "granted": await lease.granted_ttl(), "keys": list(await lease.keys()),
           "kv": _kv(n, await c.get(b"ael/1"))}
    mine = await c.lease(5, lease_id=0xae7cd)
    out["own"] = [mine.id, mine.ttl]
    out["own_again"] = await _outcome(c.lease(5, lease_id=0xae7cd))
    await lease.revoke()
    await mine.revoke()
    out["after"] = {"get": await c.get(b"ael/1"),
                    "ttl": (await c.get_lease_info(lease.id)).TTL,
                    "refresh_ttl": (await lease.refresh()).TTL,
                    "revoke": await _outcome(lease.revoke())}
    return out


@scenario
async def watch(c, n):
    start = await _rev(c) + 1
    w = await c.watch(b"aew/k", start_revision=start, prev_kv=True)
    await c.put(b"aew/k", b"1")
    await c.put(b"aew/k", b"2")
    await c.delete(b"aew/k")
    got = []
    async for e in w:
        got.append(_event(n, e))
        if len(got) == 3:
            break
    await w.cancel()
    pw = await c.watch_prefix(b"aew/p/", start_revision=await _rev(c) + 1,
                              kind=aetcd.EventKind.PUT)
    await c.put(b"aew/p/1", b"a")
    await c.delete(b"aew/p/1")           # filtered out server-side
    await c.put(b"aew/q", b"unseen")
    await c.put(b"aew/p/2", b"b")
    pgot = []
    async for e in pw:
        pgot.append(_event(n, e))
        if len(pgot) == 2:
            break
    await pw.cancel()
    rev = await _rev(c) + 1
    await c.put(b"aew/once", b"o")
    once = await c.watch_once(b"aew/once", start_revision=rev, timeout=10)
    return {"watch": got, "prefix": pgot, "once": _event(n, once),
            "timeout": await _outcome(c.watch_once(b"aew/never", timeout=1))}


@scenario
async def watch_from_compacted_revision(c, n):
    revs = [(await c.put(b"aec/k", str(i).encode())).header.revision for i in range(3)]
    await c.compact(revs[2])
    w = await c.watch(b"aec/k", start_revision=revs[0])
    try:
        async for e in w:
            return {"event": _event(n, e)}
    except aetcd.exceptions.RevisionCompactedError as exc:
        return {"raised": type(exc).__name__,
                "compacted": n.rev(exc.compacted_revision)}


@scenario
async def lock(c, n):
    a, b = c.lock(b"aelock", ttl=20), c.lock(b"aelock", ttl=20)
    out = {"a": await a.acquire(timeout=5), "b_now": await b.acquire(timeout=0),
           "a_held": await a.is_acquired(), "b_held": await b.is_acquired(),
           "refresh": (await a.refresh()).TTL}
    # b waits on a watch for the key's deletion, which a's release makes.
    waiter = asyncio.ensure_future(b.acquire(timeout=15))
    await asyncio.sleep(0)
    out["a_release"] = await a.release()
    out["b_waited"] = await waiter
    out["b_held_after"] = await b.is_acquired()
    out["b_release"] = await b.release()
    async with c.lock(b"aelock2", ttl=20) as held:
        out["ctx"] = await held.is_acquired()
    out["left"] = len(await c.get_prefix(b"aelock"))
    return out


@scenario
async def status_members(c, n):
    st = await c.status()
    ms = [m async for m in c.members()]
    return {"version": st.version,
            "leader": n.id("member", st.leader.id) if st.leader else None,
            "members": [[n.id("member", m.id), m.name, len(m.peer_urls),
                         len(m.client_urls)] for m in ms]}


@scenario
async def watch_ids_and_fragments(c, n):
    """Watches with ids of the client's choosing on one stream, and a revision whose
    events outgrow --max-request-bytes (the test's servers have 10000) delivered with
    fragment=True."""
    start = await _rev(c) + 1
    first = await c.watch(b"aef/a", start_revision=start, watch_id=7)
    again = await _outcome(c.watch(b"aef/b", start_revision=start, watch_id=7))
    big = await c.watch_prefix(b"aef/f/", start_revision=start, prev_kv=True, fragment=True)
    t = c.transactions
    await c.put(b"aef/a", b"1")
    for value in (b"x" * 900, b"y" * 900):
        await c.transaction(compare=[], success=[t.put(b"aef/f/%d" % i, value)
                                                 for i in range(10)], failure=[])
    got = []
    async for e in big:
        got.append([e.kv.key, len(e.kv.value), len(e.prev_kv.value) if e.prev_kv else 0])
        if len(got) == 20:
            break
    await big.cancel()
    seen = []
    async for e in first:
        seen.append(_event(n, e))
        break
    await first.cancel()
    return {"first_id": first.watch_id, "again": again if isinstance(again, dict) else
            {"watch_id": again.watch_id}, "first_saw": seen, "fragments": got}


@scenario
async def maintenance(c, n):
    """Compaction, defragment, hash, the NOSPACE alarm and a snapshot (checked with
    etcdutl) through aetcd's maintenance calls."""
    revs = [(await c.put(b"aem/k", str(i).encode())).header.revision for i in range(3)]
    out = {"compact": await _outcome(c.compact(revs[1], physical=True)),
           "compact_again": await _outcome(c.compact(revs[1])),
           "defragment": await _outcome(c.defragment())}
    h1, h2 = await c.hash(), await c.hash()
    await c.put(b"aem/k", b"changed")
    out["hash"] = {"stable": h1 == h2, "moves": await c.hash() != h1}
    out["alarm"] = [[a.alarm_type, a.member_id] for a in await c.create_alarm()]
    out["put_in_alarm"] = await _outcome(c.put(b"aem/k", b"no"))
    out["disarm"] = [[a.alarm_type, a.member_id] for a in await c.disarm_alarm()]
    out["listed_after"] = [a.alarm_type async for a in c.list_alarms()]
    rev = await _rev(c)
    path = os.path.join(OPTS.work, "aetcd-snap.db")
    with open(path, "wb") as f:
        await c.snapshot(f)
    st = subprocess.run([etcd351.ETCDUTL, "snapshot", "status", "-w", "json", path],
                        capture_output=True, text=True, timeout=30)
    status = json.loads(st.stdout) if st.returncode == 0 else {}
    out["snapshot"] = {"rc": st.returncode, "at_rev": status.get("revision") == rev,
                       "keys": status.get("totalKey")}
    return out


# --- with auth enabled (the test set up users root and app); aetcd sends its token as
# plain metadata, so unlike python-etcd3 it needs no TLS ---

@scenario
async def auth(c, n):
    async def as_user(user, password, fn):
        try:
            async with aetcd.Client(host="127.0.0.1", port=OPTS.port, username=user,
                                    password=password, timeout=10) as u:
                return await fn(u)
        except Exception as exc:
            return error(exc)
    return {"root_put": n.rev((await c.put(b"app/k", b"by-root")).header.revision),
            "app_put": await as_user("app", "apppw", lambda u: u.put(b"app/x", b"1")) is not None,
            "app_get": await as_user("app", "apppw", lambda u: u.get(b"app/k")) is not None,
            "app_denied": await as_user("app", "apppw", lambda u: u.put(b"other", b"no")),
            "app_lease": await as_user("app", "apppw", lambda u: u.lease(10)) is not None,
            "wrong_password": await as_user("app", "bad", lambda u: u.get(b"app/k")),
            "anonymous": await as_user(None, None, lambda u: u.get(b"app/k"))}


OPTS = None


def _run(fn, opts):
    global OPTS
    OPTS = opts

    async def go():
        kw = {"username": opts.user, "password": "rootpw"} if opts.user else {}
        async with aetcd.Client(host="127.0.0.1", port=opts.port, timeout=10, **kw) as c:
                return await asyncio.wait_for(fn(c, Norm(await _rev(c))), DEADLINE)
    return asyncio.run(go())


if __name__ == "__main__":
    scenario_main(SCENARIOS, _run)
