"""etcd3-py's asyncio client (``etcd3.AioClient``, aiohttp) scenarios, run in a
subprocess per server by test_etcd3py.py like etcd3py_scenarios.py (which says why).
etcd3-py's stateful helpers (Lease keepalive, Lock, Watcher) are thread-based and
sync only; the aio client is driven through its API calls and its watch stream."""
from __future__ import annotations

import asyncio

import aiohttp
import etcd3
from etcd3.models import RangeRequestSortOrder as Order, authpbPermissionType

from tests.clients.etcd3py_scenarios import retry_version_probe, tls
from tests.clients.etcd3py_shape import error, outcome, shape
from tests.clients.harness import Norm, scenario_main

DEADLINE = 30       # seconds any one scenario may take on one server
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


async def _outcome(aw):
    try:
        return await aw
    except Exception as exc:      # the library's error, compared across servers
        return error(exc)


def connect(port, **kw):
    return retry_version_probe(lambda: etcd3.AioClient(
        host="127.0.0.1", port=port, timeout=aiohttp.ClientTimeout(total=10), **tls(), **kw))


async def rev_now(c) -> int:
    return int((await c.status()).header.revision)


@scenario
async def aio_kv(c, n):
    out = {"put": shape(n, await c.put("pya/a", "1")),
           "put_prev": shape(n, await c.put("pya/a", "2", prev_kv=True))}
    for k in "cbd":
        await c.put("pya/" + k, k)
    out["get"] = shape(n, await c.range("pya/a"))
    out["prefix_desc_limit"] = shape(n, await c.range("pya/", prefix=True, limit=3,
                                                      sort_order=Order.DESCEND))
    out["count_only"] = shape(n, await c.range("pya/", prefix=True, count_only=True))
    out["keys_only"] = shape(n, await c.range("pya/", prefix=True, keys_only=True))
    out["at_revision"] = shape(n, await c.range("pya/a", revision=n.base_rev + 1))
    out["empty_key"] = await _outcome(c.put("", "v"))
    out["future"] = await _outcome(c.range("pya/a", revision=n.base_rev + 1000))
    t = c.Txn()
    t.If(t.key("pya/a").value == "2").If(t.key("pya/b").version == 1)
    t.Then(t.put("pya/t", "yes")).Else(t.put("pya/t", "no"))
    out["txn"] = shape(n, await t.commit())
    out["delete_prev"] = shape(n, await c.delete_range("pya/", prefix=True, prev_kv=True))
    return out


@scenario
async def aio_lease(c, n):
    g = await c.lease_grant(30)
    await c.put("pyal/k", "v", lease=g.ID)
    ttl = await c.lease_time_to_live(g.ID, keys=True)
    out = {"grant": shape(n, g), "ttl": {**shape(n, ttl), "TTL": 25 <= ttl.TTL <= 30},
           # etcd3-py's keepalive iterates a sync stream: not written for the aio client.
           "keepalive_once": outcome(c.lease_keep_alive_once, g.ID),
           "revoke": shape(n, await c.lease_revoke(g.ID))}
    out["after"] = shape(n, await c.lease_time_to_live(g.ID))
    out["revoke_again"] = await _outcome(c.lease_revoke(g.ID))
    out["key_after"] = shape(n, await c.range("pyal/k"))
    return out


@scenario
async def aio_watch(c, n):
    """The gateway's watch stream, one event awaited per write (etcd3-py's aio
    stream drops what a read brings beyond one JSON message)."""
    out = {"events": []}
    stream = c.watch_create(key="pyaw/", prefix=True, prev_kv=True)
    async with stream:
        created = await stream.__anext__()
        out["created"] = shape(n, created)
        for write in (lambda: c.put("pyaw/a", "1"), lambda: c.put("pyaw/a", "2"),
                      lambda: c.delete_range("pyaw/a")):
            await write()
            r = await asyncio.wait_for(stream.__anext__(), 10)
            out["events"] += shape(n, r.events)
    await c.put("pyaw/compact-me", "x")
    await c.compact(await rev_now(c))
    old = c.watch_create(key="pyaw/", start_revision=n.base_rev + 1)
    async with old:
        # Only the first message: the cancel may come in the same read (see above).
        out["from_compacted"] = shape(n, await asyncio.wait_for(old.__anext__(), 10))
    return out


@scenario
async def aio_maintenance(c, n):
    return {"status": shape(n, await c.status(), "member"),
            "members": shape(n, await c.member_list(), "member"),
            "alarms": shape(n, await c.alarm_get(0, "NONE"), "member"),
            "hash": shape(n, await c.hash()),
            "defragment": shape(n, await c.defragment()),
            "compact_future": await _outcome(c.compact(n.base_rev + 1000))}


@scenario
async def aio_auth(c, n):
    out = {"user_add": shape(n, await c.user_add("root", "rootpw")),
           "grant_root": shape(n, await c.user_grant_role("root", "root")),
           "role_add": shape(n, await c.role_add("ro")),
           "grant": shape(n, await c.role_grant_permission(
               "ro", "pyaa/", permType=authpbPermissionType.READ, prefix=True)),
           "user_ro": shape(n, await c.user_add("ro", "ropw")),
           "user_grant": shape(n, await c.user_grant_role("ro", "ro")),
           "enable": shape(n, await c.auth_enable())}
    out["anonymous"] = await _outcome(c.range("pyaa/x"))
    ro = connect(c.port)
    try:
        await ro.auth("ro", "ropw")
        out["ro_get"] = shape(n, await ro.range("pyaa/x"))
        out["ro_put_denied"] = await _outcome(ro.put("pyaa/x", "1"))
        out["ro_outside"] = await _outcome(ro.range("other"))
        out["wrong_password"] = await _outcome(ro.authenticate("ro", "bad"))
    finally:
        await ro.close()
    await c.auth("root", "rootpw")
    out["disable"] = shape(n, await c.auth_disable())
    out["anonymous_after"] = shape(n, await c.range("pyaa/x"))
    for drop in (c.user_delete("ro"), c.role_delete("ro"), c.user_delete("root")):
        await drop
    return out


def _run(fn, opts):
    async def go():
        c = connect(opts.port)
        try:
            return await asyncio.wait_for(fn(c, Norm(await rev_now(c))), DEADLINE)
        finally:
            await c.close()
    return asyncio.run(go())


if __name__ == "__main__":
    scenario_main(SCENARIOS, _run)
