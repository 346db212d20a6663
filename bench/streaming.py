"""Streaming benchmarks: watch, watch-latency, lease-keepalive (one load process).

All run on the same HTTP/2 client as the unary load, with gRPC messages on long-lived
streams. Each is bounded by its request counts and by --max-seconds.
"""
from __future__ import annotations

import asyncio
import struct
import time

from kvcore.h2client import framing as h2

from . import client, etcdapi, stats
from .runner import cpu_seconds_self, proc_cpu_seconds

WATCH = "/etcdserverpb.Watch/Watch"
KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
_now = time.monotonic_ns


class _Collector:
    def __init__(self):
        self.lat: list[int] = []
        self.errors: dict = {}
        self.ok = 0

    def err(self, kind: str, n: int = 1):
        self.errors[kind] = self.errors.get(kind, 0) + n


async def _connections(endpoints, n, token):
    conns = []
    for i in range(n):
        host, port = endpoints[i % len(endpoints)]
        conns.append((await client.connect(host, port), host, port))
    return conns


def _block(path, host, port, token):
    return h2.request_header_block(path, f"{host}:{port}", [("token", token)] if token else [])


class _WatchStream(client.Stream):
    def __init__(self, col: _Collector, n_watchers: int, on_event=None):
        self.col = col
        self.n = n_watchers
        self.created = 0
        self.create_sent: list[int] = []
        self.all_created = asyncio.get_running_loop().create_future()
        self.on_event = on_event
        self.events = 0
        self.pb = etcdapi.pb()

    def on_message(self, msg):
        r = self.pb.WatchResponse()
        r.ParseFromString(msg)
        now = _now()
        if r.created:
            if self.created < len(self.create_sent):
                self.col.lat.append(now - self.create_sent[self.created])
            self.created += 1
            if self.created >= self.n and not self.all_created.done():
                self.all_created.set_result(None)
        if r.canceled:
            self.col.err(f"watch canceled: {r.cancel_reason or 'no reason given'}")
        for ev in r.events:
            self.events += 1
            if self.on_event is not None:
                self.on_event(ev, now)

    def on_close(self, status, message):
        if status != 0:
            self.col.err(f"{h2.GRPC_STATUS_NAMES.get(status, status)}: {message}")
        if not self.all_created.done():
            self.all_created.set_exception(client.CallError(status, message or "stream closed"))


async def _open_watchers(conns, streams, per_stream, keys, token, col, on_event=None):
    pb = etcdapi.pb()
    handlers = []
    for s in range(streams):
        conn, host, port = conns[s % len(conns)]
        ws = _WatchStream(col, per_stream, on_event)
        sid = conn.open_stream(_block(WATCH, host, port, token), ws)
        for w in range(per_stream):
            key = keys[(s * per_stream + w) % len(keys)]
            req = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key))
            ws.create_sent.append(_now())
            conn.send(sid, h2.grpc_message(req.SerializeToString()))
        conn.flush()
        handlers.append(ws)
    return handlers


async def _paced_puts(session: etcdapi.Session, keys, total, rate, deadline, val_size, stamp):
    """Puts one at a time (rate-limited); `stamp(i)` is called right before put i."""
    interval = 1.0 / rate if rate else 0.0
    t0 = time.monotonic()
    done = 0
    for i in range(total):
        if time.monotonic_ns() >= deadline:
            break
        if interval:
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        stamp(i)
        value = struct.pack(">Q", i) + b"v" * max(0, val_size - 8)
        await session.put(keys[i % len(keys)], value)
        done += 1
    return done


def _result(label, endpoints, conns, clients, total, col, t0, t_end, cpu, extra, server_pids,
            srv0, cpu_wall_s=None):
    hist = stats.histogram_of(col.lat)
    elapsed = max(1e-9, (t_end - t0) / 1e9)
    wall = cpu_wall_s or elapsed
    out = {
        "label": label, "endpoints": [f"{h}:{p}" for h, p in endpoints],
        "conns": conns, "clients": clients, "total": total, "procs": 1,
        "ok": col.ok, "errors": col.errors, "error_count": sum(col.errors.values()),
        "elapsed_s": elapsed, "rps": col.ok / elapsed,
        "latency": stats.summary(hist),
        "generator": {"procs": 1, "cpu_s": cpu, "cpu_pct_of_one_core": 100 * cpu / wall,
                      "cpu_us_per_request": 1e6 * cpu / col.ok if col.ok else None},
        "hit_time_limit": False, "extra": extra, "histogram": stats.encode(hist).decode(),
    }
    if server_pids:
        s = sum((proc_cpu_seconds(p) or 0) - (srv0.get(p) or 0) for p in server_pids)
        out["server"] = {"pids": server_pids, "cpu_s": s, "cpu_pct_of_one_core": 100 * s / wall}
    return out


async def watch_latency(a, endpoints, token, server_pids=()):
    """etcd benchmark watch-latency: every watcher watches one key; puts at --put-rate;
    latency = event arrival − put sent, for every watcher and every put."""
    key = b"watch-latency-" + b"k" * max(0, a.key_size - 14)
    col = _Collector()
    conns = await _connections(endpoints, a.conns, token)
    deadline = _now() + int(a.max_seconds * 1e9)
    sent: dict[int, int] = {}

    def on_event(ev, now):
        i = struct.unpack_from(">Q", ev.kv.value)[0] if len(ev.kv.value) >= 8 else -1
        t = sent.get(i)
        if t is not None:
            col.lat.append(now - t)
            col.ok += 1

    handlers = await _open_watchers(conns, a.streams, a.watchers_per_stream, [key], token,
                                    _Collector(), on_event)
    await asyncio.wait_for(asyncio.gather(*(h.all_created for h in handlers)), 30)
    srv0 = {p: proc_cpu_seconds(p) for p in server_pids}
    cpu0, t0 = cpu_seconds_self(), _now()
    host, port = endpoints[0]
    async with etcdapi.Session(host, port, token) as s:
        done = await _paced_puts(s, [key], a.put_total, a.put_rate, deadline, a.val_size,
                                 lambda i: sent.__setitem__(i, _now()))
    expected = done * a.streams * a.watchers_per_stream
    while col.ok < expected and _now() < deadline:
        await asyncio.sleep(0.01)
    t_end, cpu1 = _now(), cpu_seconds_self()
    if col.ok < expected:
        col.err("events not delivered before the time limit", expected - col.ok)
    for c, _, _ in conns:
        c.close()
    return _result("watch-latency", endpoints, a.conns, a.streams * a.watchers_per_stream,
                   expected, col, t0, t_end, cpu1 - cpu0,
                   {"puts": done, "watchers": a.streams * a.watchers_per_stream,
                    "events expected": expected, "events received": col.ok,
                    "put rate": a.put_rate}, server_pids, srv0)


async def watch(a, endpoints, token, server_pids=()):
    """etcd benchmark watch: open streams × watchers (latency = create → created), then
    put --put-total times to the watched keys and count the events that arrive."""
    nkeys = a.watched_key_total
    keys = [(b"watch-" + str(i).encode()).ljust(a.key_size, b"_") for i in range(nkeys)]
    col = _Collector()
    conns = await _connections(endpoints, a.conns, token)
    deadline = _now() + int(a.max_seconds * 1e9)
    srv0 = {p: proc_cpu_seconds(p) for p in server_pids}
    cpu0, t0 = cpu_seconds_self(), _now()
    handlers = await _open_watchers(conns, a.streams, a.watch_per_stream, keys, token, col)
    try:
        await asyncio.wait_for(asyncio.gather(*(h.all_created for h in handlers)),
                               max(1.0, (deadline - _now()) / 1e9))
    except asyncio.TimeoutError:
        col.err("watchers not created before the time limit")
    col.ok = len(col.lat)
    t_created = _now()
    # every watcher on key k gets every put to k
    per_key = [0] * nkeys
    for s in range(a.streams):
        for w in range(a.watch_per_stream):
            per_key[(s * a.watch_per_stream + w) % nkeys] += 1
    host, port = endpoints[0]
    async with etcdapi.Session(host, port, token) as s:
        done = await _paced_puts(s, keys, a.put_total, a.put_rate, deadline, a.val_size,
                                 lambda i: None)
    expected = sum(per_key[i % nkeys] for i in range(done))
    t_put = _now()
    while sum(h.events for h in handlers) < expected and _now() < deadline:
        await asyncio.sleep(0.01)
    got = sum(h.events for h in handlers)
    t_end, cpu1 = _now(), cpu_seconds_self()
    if got < expected:
        col.err("events not delivered before the time limit", expected - got)
    for c, _, _ in conns:
        c.close()
    res = _result("watch (latency = watcher creation)", endpoints, a.conns,
                  a.streams * a.watch_per_stream, a.streams * a.watch_per_stream, col, t0,
                  t_created, cpu1 - cpu0,
                  {"watchers created": col.ok, "puts": done, "events expected": expected,
                   "events received": got,
                   "events/sec": round(got / max(1e-9, (t_end - t_created) / 1e9), 1),
                   "put phase s": round((t_put - t_created) / 1e9, 3),
                   "whole run s": round((t_end - t0) / 1e9, 3)}, server_pids, srv0,
                  cpu_wall_s=(t_end - t0) / 1e9)
    return res


class _KeepAlive(client.Stream):
    def __init__(self, conn, sid_holder, col, lease_id, budget, loop):
        self.conn = conn
        self.col = col
        self.msg = h2.grpc_message(etcdapi.pb().LeaseKeepAliveRequest(ID=lease_id)
                                   .SerializeToString())
        self.budget = budget
        self.t = 0
        self.done = loop.create_future()
        self.sid = 0

    def send_next(self):
        if self.budget.left <= 0 or _now() >= self.budget.deadline:
            if not self.done.done():
                self.done.set_result(None)
            return
        self.budget.left -= 1
        self.t = _now()
        self.conn.send(self.sid, self.msg)

    def on_message(self, msg):
        self.col.lat.append(_now() - self.t)
        self.col.ok += 1
        self.send_next()
        self.conn.flush()

    def on_close(self, status, message):
        self.col.err(f"{h2.GRPC_STATUS_NAMES.get(status, status)}: {message}" if status
                     else "keep-alive stream closed early")
        if not self.done.done():
            self.done.set_result(None)


class _Budget:
    def __init__(self, left, deadline):
        self.left = left
        self.deadline = deadline


async def lease_keepalive(a, endpoints, token, server_pids=()):
    """etcd benchmark lease-keepalive: each client grants a lease, then sends keep-alives
    on its LeaseKeepAlive stream one at a time; --total keep-alives in all."""
    loop = asyncio.get_running_loop()
    col = _Collector()
    conns = await _connections(endpoints, a.conns, token)
    host, port = endpoints[0]
    async with etcdapi.Session(host, port, token) as s:
        leases = [await s.lease_grant(a.ttl) for _ in range(a.clients)]
    budget = _Budget(a.total, _now() + int(a.max_seconds * 1e9))
    streams = []
    for i, lid in enumerate(leases):
        conn, h, p = conns[i % len(conns)]
        ka = _KeepAlive(conn, None, col, lid, budget, loop)
        ka.sid = conn.open_stream(_block(KEEPALIVE, h, p, token), ka)
        streams.append(ka)
    for c, _, _ in conns:
        c.flush()
    srv0 = {p: proc_cpu_seconds(p) for p in server_pids}
    cpu0, t0 = cpu_seconds_self(), _now()
    for ka in streams:
        ka.send_next()
    for c, _, _ in conns:
        c.flush()
    try:
        await asyncio.wait_for(asyncio.gather(*(k.done for k in streams)), a.max_seconds + 10)
    except asyncio.TimeoutError:
        col.err("no answer before the time limit")
    t_end, cpu1 = _now(), cpu_seconds_self()
    for c, _, _ in conns:
        c.close()
    async with etcdapi.Session(host, port, token) as s:
        pb = etcdapi.pb()
        for lid in leases:
            try:
                await s.call("/etcdserverpb.Lease/LeaseRevoke", pb.LeaseRevokeRequest(ID=lid),
                              pb.LeaseRevokeResponse)
            except client.CallError:
                pass
    return _result("lease-keepalive", endpoints, a.conns, a.clients, a.total, col, t0, t_end,
                   cpu1 - cpu0, {"leases": len(leases), "ttl": a.ttl}, server_pids, srv0)
