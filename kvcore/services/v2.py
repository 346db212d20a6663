"""The v2 keys service (--enable-v2): etcd 3.4's v2 store, replicated through
Raft (OP_V2: a JSON request carrying its absolute expiry time) and kept in the
backend (meta "v2store", written in the apply transaction, so it is in
snapshots and survives restarts; a whole-store write per change, which suits
the small trees v2 clients keep).

A worker sends one V2 pseudo-call per HTTP request (JSON: the parsed request)
and gets back {"s": status, "h": headers, "b": body}. Reads are served from the
local copy (quorum=true goes through the log, as etcd's QGET); wait=true
parks a watcher until its event; the leader proposes the expiry of due keys.

A wait's answer comes in two calls, as etcd's comes in two writes: etcd flushes a
wait's headers (200, X-Etcd-Index at the watch's start) before its event, so a
client's read timeout ends the body read, not the request (python-etcd tells
EtcdWatchTimedOut from a failed connection by that, and urllib3 retries a request
whose headers did not come). A worker's GET carries "park": a wait with no event
yet answers its headers and a token at once, and the worker's "claim" call with
that token gets the event.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import unquote

from kvcore import logs
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.server.entry import OP_V2
from kvcore.services import v2_members
from kvcore.v2store import Store, V2Error
from kvcore.v2store import auth_http
from kvcore.v2store import errors as v2errors
from kvcore.v2store import http as v2http
from kvcore.v2store.auth import AuthStore
from kvcore.v2store.store import HISTORY, _rfc3339

log = logging.getLogger("kvcore.v2")

META_KEY = b"v2store"
# The event history, one meta key per event in a ring of HISTORY slots (etcd 3.4
# rebuilds it by replaying its WAL, so a waitIndex before a restart still answers).
HIST_PREFIX = b"v2hist/"
# A parked wait not claimed this long after its headers went out is dropped (its
# worker went away between the two calls).
PARK_CLAIM_S = 10.0


def _hist_key(index: int) -> bytes:
    return HIST_PREFIX + (index % HISTORY).to_bytes(2, "big")


def register(ctx, reg) -> "V2Service":
    svc = V2Service(ctx, reg.services.get("cluster"))
    reg.applier(OP_V2, svc.apply)
    reg.state_opened(svc.load)
    reg.leader_changed(svc.on_leader)
    reg.timer(svc.expiry_loop)
    return svc


def _strip_header(resp: bytes) -> bytes:
    """The applier's body from a proposal's answer (the core puts a ResponseHeader,
    field 1, in front of every applier's body)."""
    if not resp or resp[0] != 0x0A:
        return resp
    n, shift, i = 0, 0, 1
    while True:
        b = resp[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    return resp[i + n:]


class V2Service:
    def __init__(self, ctx, cluster=None):
        self.ctx = ctx
        self.cluster = cluster       # the Cluster service: v2 member changes use it
        self.store = Store()
        self.started = self.leader_since = time.time()
        self.auth = AuthStore(self._auth_do, self._auth_read)
        self._parked: dict = {}      # token -> the future of a parked wait's answer
        self._park_seq = 0

    def on_leader(self, old: int, new: int) -> None:
        self.leader_since = time.time()

    def load(self) -> None:
        backend = self.ctx.backend
        with backend.begin_read() as txn:
            raw = txn.get(META_KEY, db=backend.meta)
            self.store = Store.from_json(json.loads(raw)) if raw else Store()
            if raw:
                self.store.restore_history(
                    json.loads(v) for v in (txn.get(_hist_key(i), db=backend.meta)
                                            for i in range(HISTORY)) if v)

    # ---- the worker's calls ----

    def handle(self, payload: bytes):
        req = json.loads(payload)
        kind = req.pop("kind", "keys")
        if kind == "members" and not req.get("write"):
            return self._members(req.get("leader", False))
        if kind == "stats":
            return self._stats(req["which"])
        if kind == "claim":
            return self._claim(req["token"])
        caller = auth_http.Caller(req.get("authz", ""), req.get("cn", ""),
                                  bool(getattr(self.ctx.cfg, "client_cert_auth", False)))
        if kind == "members":    # a change: etcd's hasWriteRootAccess comes first
            return asyncio.ensure_future(self._members_write(caller, req))
        if kind == "auth":
            return asyncio.ensure_future(self._auth_answer(req, caller))
        target, more, park = req["target"], req.get("more", False), req.get("park", False)
        try:
            req = v2http.parse(req["method"], target, req["body"].encode("latin-1"),
                               req["ct"])
        except V2Error as err:
            return self._error(err)
        # a stream's next wait ("more") was checked with its first: etcd checks (and
        # counts the store read of /2/enabled) once per HTTP request
        if not more and self.auth.enabled():
            key = unquote(target.partition("?")[0][len(v2http.KEYS_PREFIX):])
            return asyncio.ensure_future(self._keys_checked(req, caller, key, park))
        return self._keys(req, park)

    async def _keys_checked(self, req: dict, caller, key: str, park: bool) -> bytes:
        if not await auth_http.key_access(self.auth, caller, key, req["recursive"],
                                          req["method"] != "GET", known_enabled=True):
            return self._error(V2Error(v2errors.UNAUTHORIZED, "Insufficient credentials"))
        out = self._keys(req, park)
        return await out if isinstance(out, asyncio.Future) else out

    def _keys(self, req: dict, park: bool = False):
        """A parsed (and permitted) /v2/keys request: bytes, or a future of them."""
        if req["method"] == "GET" and req["wait"]:
            return self._wait(req, park)
        if req["method"] == "GET":
            return self._answer(self._apply_local(req))
        proposal = json.dumps(v2http.with_expiry(req, time.time())).encode()
        out = asyncio.get_running_loop().create_future()

        def done(f):
            if out.done():
                return
            exc = f.exception()
            if exc is not None:
                if getattr(exc, "message", None) == EtcdError.CONTEXT_DEADLINE[1]:
                    # etcd's v2 handler reports a proposal's deadline as its own
                    # timeout (parseProposeCtxErr): "etcdserver: request timed out"
                    exc = etcd_error(EtcdError.TIMEOUT)
                out.set_exception(exc)
            else:
                out.set_result(_strip_header(f.result()))
        self.ctx.propose(OP_V2, proposal).add_done_callback(done)
        return out

    # ---- v2 auth: its store requests on the auth tree ----

    async def _auth_answer(self, req: dict, caller) -> bytes:
        status, headers, body = await auth_http.serve(
            self.auth, caller, req["method"], req["path"], req["body"].encode("latin-1"),
            f"{self.ctx.cluster_id:x}")
        return json.dumps({"s": status, "h": headers, "b": body.decode()}).encode()

    def _auth_read(self, path: str):
        with self.store.space("auth"):
            try:
                return self.store.get(path, False, False, time.time())["node"]
            except V2Error as err:
                if err.code == v2errors.KEY_NOT_FOUND:
                    return None
                raise

    async def _auth_do(self, req: dict) -> dict:
        proposal = dict(v2http.with_expiry(req, time.time()), space="auth")
        ans = json.loads(_strip_header(await self.ctx.propose(
            OP_V2, json.dumps(proposal).encode())))
        doc = json.loads(ans["b"])
        if ans["s"] >= 300:
            raise V2Error(doc["errorCode"], doc.get("cause", ""), doc.get("index", 0))
        return doc

    def _apply_local(self, req: dict):
        try:
            return v2http.apply(self.store, v2http.with_expiry(req, time.time())), req
        except V2Error as err:
            return err, req

    def _wait(self, req: dict, park: bool = False):
        """The answer's future; with ``park``, bytes at once: the event found in
        the history ("park": 0), or the headers and a token to claim it with."""
        out = asyncio.get_running_loop().create_future()
        start = self.store.index

        def deliver(ev):
            if not out.done():
                out.set_result(self._envelope(200, start, v2http.event_body(ev, False)))
        try:
            w = self.store.watch(req["path"], req["recursive"], req["waitIndex"], deliver)
        except V2Error as err:
            return self._error(err)
        if w is None:
            return _parked_answer(out.result(), 0) if park else out
        out.add_done_callback(lambda f: self.store.cancel(w))
        if not park:
            return out
        self._park_seq += 1
        token = self._park_seq
        self._parked[token] = out
        asyncio.get_running_loop().call_later(PARK_CLAIM_S, self._unclaimed, token)
        return _parked_answer(self._envelope(200, start, b""), token)

    def _claim(self, token: int):
        """A parked wait's answer (its future: the worker cancels it when its client
        goes away, which removes the watcher)."""
        out = self._parked.pop(token, None)
        if out is None:     # dropped; its client never sees this (its headers went)
            return self._error(V2Error(v2errors.RAFT_INTERNAL, "wait dropped"))
        return out

    def _unclaimed(self, token: int) -> None:
        out = self._parked.pop(token, None)
        if out is not None and not out.done():
            out.cancel()

    async def _members_write(self, caller, req: dict) -> bytes:
        if not await auth_http.root_access(self.auth, caller):
            status, headers, body = auth_http.NO_AUTH
        else:
            status, headers, body = await v2_members.serve(
                self.ctx, self.cluster, req["method"], req["path"],
                req["body"].encode("latin-1"), req["ct"], self.store)
        return json.dumps({"s": status, "h": headers, "b": body.decode()}).encode()

    def _members(self, leader: bool = False) -> bytes:
        """/v2/members (or /v2/members/leader: the leader, 503 during an election)."""
        ms = []
        for m in self.ctx.membership.sorted():
            if leader and m.id != self.ctx.raft.lead:
                continue
            ms.append({"id": f"{m.id:x}", "name": m.name, "peerURLs": list(m.peer_urls),
                       "clientURLs": list(m.client_urls)})
        status, doc = 200, {"members": ms}
        if leader:
            status, doc = (200, ms[0]) if ms else (503, {"message": "During election"})
        body = json.dumps(doc, separators=(",", ":")) + ("\n" if status == 200 else "")
        return json.dumps({"s": status, "h": [["Content-Type", "application/json"],
                                              ["X-Etcd-Cluster-Id", f"{self.ctx.cluster_id:x}"]],
                           "b": body}).encode()

    def _stats(self, which: str) -> bytes:
        """/v2/stats/{self,leader,store} (etcd's v2stats; the raft traffic counters
        are not kept)."""
        ctx = self.ctx
        me = f"{ctx.member_id:x}"
        status = 200
        if which == "store":
            doc = self.store.stats_json()
        elif which == "self":
            doc = {"name": ctx.cfg.name, "id": me,
                   "state": "StateLeader" if ctx.raft.is_leader else "StateFollower",
                   "startTime": _rfc3339(self.started),
                   "leaderInfo": {"leader": f"{ctx.raft.lead:x}",
                                  "uptime": logs.go_duration(time.time() - self.leader_since),
                                  "startTime": _rfc3339(self.leader_since)},
                   "recvAppendRequestCnt": 0, "sendAppendRequestCnt": 0}
        elif ctx.raft.is_leader:
            zero = {"current": 0, "average": 0, "standardDeviation": 0,
                    "minimum": 0, "maximum": 0}
            doc = {"leader": me, "followers": {
                f"{m.id:x}": {"latency": dict(zero), "counts": {"fail": 0, "success": 0}}
                for m in ctx.membership.sorted() if m.id != ctx.member_id}}
        else:
            status, doc = 403, {"message": "not current leader"}
        return json.dumps({"s": status, "h": [["Content-Type", "application/json"]],
                           "b": json.dumps(doc, separators=(",", ":")) + "\n"}).encode()

    # ---- apply (every member, in log order) ----

    def apply(self, txn, w, req_bytes: bytes) -> tuple:
        req = json.loads(req_bytes)
        before = self.store.index
        if req["method"] == "SYNC":
            self.store.expire(req["now"])
            result = None
        else:
            try:
                with self.store.space(req.get("space", "keys")):
                    result = v2http.apply(self.store, req)
            except V2Error as err:
                result = err
        meta = self.ctx.backend.meta
        txn.put(META_KEY, json.dumps(self.store.to_json(), separators=(",", ":")).encode(),
                db=meta)
        for ev in reversed(self.store.history):
            if ev.index <= before:
                break
            txn.put(_hist_key(ev.index), json.dumps(Store.event_json(ev),
                                                    separators=(",", ":")).encode(), db=meta)
        rev = self.ctx.store.current_rev
        if result is None:
            return rev, b""
        return rev, self._answer((result, req))

    # ---- answers ----

    def _answer(self, got) -> bytes:
        result, req = got
        if isinstance(result, V2Error):
            return self._error(result)
        status = 201 if result.is_created else 200
        return self._envelope(status, self.store.index,
                              v2http.event_body(result, req.get("noValueOnSuccess")))

    def _headers(self, etcd_index: int, raft: bool = True) -> list:
        h = [["Content-Type", "application/json"],
             ["X-Etcd-Cluster-Id", f"{self.ctx.cluster_id:x}"],
             ["X-Etcd-Index", str(etcd_index)]]
        if raft:
            h += [["X-Raft-Index", str(self.ctx.raft.committed)],
                  ["X-Raft-Term", str(self.ctx.raft.term)]]
        return h

    def _envelope(self, status: int, etcd_index: int, body: bytes) -> bytes:
        return json.dumps({"s": status, "h": self._headers(etcd_index),
                           "b": body.decode()}).encode()

    def _error(self, err: V2Error) -> bytes:
        return json.dumps({"s": err.status, "h": self._headers(err.index, raft=False),
                           "b": err.body().decode()}).encode()

    # ---- expiry: the leader proposes it, every member applies it ----

    async def expiry_loop(self) -> None:
        if not self.ctx.cfg.enable_v2:
            return
        while True:
            await asyncio.sleep(0.5)
            due = self.store.next_expiry()
            if due is None or not self.ctx.raft.is_leader or due > time.time():
                continue
            req = json.dumps({"method": "SYNC", "now": time.time()}).encode()
            try:
                await self.ctx.propose_internal(OP_V2, req)
            except Exception as e:   # retried on the next tick
                log.debug("v2 expiry proposal failed: %s", e)


def _parked_answer(envelope: bytes, token: int) -> bytes:
    """A wait's envelope marked as parked (``token``) or complete (0)."""
    doc = json.loads(envelope)
    doc["park"] = token
    return json.dumps(doc).encode()
