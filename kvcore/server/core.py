"""The core process: the one owner of every state change of a member.

Write path (shaped like Raft from the start):
  request -> check -> proposer (batches one loop turn) -> node.propose
  -> Ready -> WAL.save (one write + one fdatasync, on the I/O thread)
  -> apply committed entries to MVCC in ONE LMDB transaction that also stores the
     applied (consistent) index -> answer the waiting callers -> node.advance.
While one batch is being persisted the next gathers (group commit).

Reads are answered from the applied state: a write is only acknowledged after it
is applied, so a read that starts after the acknowledgement sees it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import Callable, Optional

import lmdb

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2, wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.concurrency import election, lock
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.lease.lessor import MAX_LEASE_TTL, Lessor
from kvcore.mvcc.store import CompactedError, FutureRevError, KVStore, ReadView
from kvcore.mvcc.watch import WatchHub, WatchStream
from kvcore.server import kv as kvops
from kvcore.server.auth import AuthStore
from kvcore.server.auth_api import AUTH_OPS, AuthAPI
from kvcore.server.alarms import Alarms, alarm_response, used_bytes
from kvcore.server.deadlines import Deadlines
from kvcore.server.cluster_api import ClusterAPI
from kvcore.server.config import Config
from kvcore.server.metrics import CoreMetrics
from kvcore.raft import codec as rcodec
from kvcore.raft.types import ConfChangeType, EntryConfChange
from kvcore.server.membership import (Member, Membership, cluster_id, initial_members,
                                      member_id)
from kvcore.server.peer import PeerTransport
from kvcore.server.raftnode import RaftDriver, bootstrap_entries
from kvcore.ipc import framing as fr
from kvcore.ipc.readstate import ReadState
from kvcore.storage.backend import (META_CLUSTER_ID, META_CONF_STATE, META_CONSISTENT_INDEX,
                                    META_MEMBER_ID, META_TERM, Backend, from_u64, u64)
from kvcore.storage.backend import install as backend_install
from kvcore.storage.wal import WAL, WalContents

try:
    if os.environ.get("KVCORE_PURE_PYTHON") == "1":
        raise ImportError
    from kvcore._ext.proposer import Proposer, decode_entry_data
except ImportError:  # pragma: no cover
    from kvcore.server.proposer_py import Proposer, decode_entry_data

log = logging.getLogger("kvcore.core")

OP_PUT, OP_DELETE, OP_TXN, OP_COMPACT = 1, 2, 3, 4
OP_LEASE_GRANT, OP_LEASE_REVOKE, OP_LEASE_CHECKPOINT = 5, 6, 7
OP_MEMBER_ATTR = 8
OP_AUTH = 9   # payload: u8 index into auth_api.AUTH_OPS + the etcd request
OP_ALARM = 10  # payload: AlarmRequest (ACTIVATE / DEACTIVATE)

KV = "/etcdserverpb.KV/"
MAINT = "/etcdserverpb.Maintenance/"
CLUSTER = "/etcdserverpb.Cluster/"
LEASE = "/etcdserverpb.Lease/"


class MemberData:
    """Where a member keeps its files, like etcd: member/wal and member/snap/db
    (for kvcore an LMDB directory: data.mdb and lock.mdb)."""

    def __init__(self, data_dir: str, wal_dir: str = ""):
        self.data_dir = data_dir
        self.wal_dir = wal_dir or os.path.join(data_dir, "member", "wal")
        self.snap_dir = os.path.join(data_dir, "member", "snap")
        self.db_path = os.path.join(self.snap_dir, "db")


class Core:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.loop = asyncio.get_event_loop()
        self.paths = MemberData(cfg.data_dir, cfg.wal_dir)
        self.initial = initial_members(cfg.initial_cluster_map(), cfg.initial_cluster_token)
        self.member_id = member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
        self.cluster_id = cluster_id([m.id for m in self.initial])
        self.unary: dict[str, Callable] = {}
        self.streams: dict[str, Callable] = {}
        self._changes: list = []   # (revision, changes) applied in the current batch
        self._catchup_scheduled = False
        self._last_snapshot = 0
        self.transport = None
        self.connections: set = set()   # IPC connections of the workers
        self._headers = wire.Headers()
        self.deadlines = Deadlines(self.loop, self.request_timeout, _expire)
        self.read_state = ReadState()   # shared with the workers (kvcore/ipc/readstate.py)
        self.auth = AuthStore()          # kvcore/server/auth.py; loaded in _open_state
        self.auth.tokens.ttl = float(cfg.auth_token_ttl)
        self.auth.on_change = self._auth_changed
        self.auth_api = AuthAPI(self, OP_AUTH)
        self.stopped = self.loop.create_future()   # set when this member must stop
        self._register()

    # ---- startup ----

    async def discover(self) -> None:
        """Joining an existing cluster with a fresh data dir: learn this member's ID
        (given by 'member add') and the cluster ID from a running member."""
        cfg = self.cfg
        if cfg.initial_cluster_state != "existing" or os.path.exists(self.paths.wal_dir):
            return
        from kvcore.server.peer import fetch_members
        mine = set(cfg.initial_advertise_peer_urls)
        urls = [u for m in self.initial for u in m.peer_urls if u not in mine]
        info = await fetch_members(urls, tls=cfg.peer_tls)
        if info is None:
            raise SystemExit("kvcore: cannot reach any member of the existing cluster at "
                             f"{', '.join(urls)} to join it")
        me = next((m for m in info["members"] if set(m["peerURLs"]) == mine), None)
        if me is None:
            raise SystemExit("kvcore: this member's peer URLs "
                             f"{', '.join(sorted(mine))} are not in the cluster; add it first "
                             "with 'etcdctl member add'")
        self.member_id = me["id"]
        self.cluster_id = info["cluster_id"]
        self.initial = [Member.from_json(json.dumps(m).encode()) for m in info["members"]]
        log.info("joining cluster %x as member %x", self.cluster_id, self.member_id)

    def open(self) -> None:
        cfg = self.cfg
        os.makedirs(self.paths.snap_dir, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        self.wal = WAL(self.paths.wal_dir)
        self.wal.unsafe_no_fsync = cfg.unsafe_no_fsync
        contents: WalContents = self.wal.open(self.member_id, self.cluster_id)
        if contents.member_id and contents.member_id != self.member_id:
            raise SystemExit(f"data dir {cfg.data_dir} belongs to member "
                             f"{contents.member_id:x}, not {self.member_id:x} (check --name, "
                             "--initial-advertise-peer-urls and --initial-cluster-token)")
        if contents.cluster_id and contents.cluster_id != self.cluster_id:
            self.cluster_id = contents.cluster_id  # joined an existing cluster earlier
        if contents.repaired_bytes:
            log.warning("WAL: repaired a torn tail (%d bytes of an unfinished write dropped)",
                        contents.repaired_bytes)
        map_size = max(cfg.quota_backend_bytes * 2, 1 << 30)
        self.backend = Backend(self.paths.db_path, map_size=map_size)
        self._open_state()
        self._store_identity()
        self.metrics = CoreMetrics(self)
        applied = self.store.consistent_index
        self._last_snapshot = contents.snapshot_index
        fresh = not contents.entries and not contents.snapshot_index and not applied
        bootstrap = None
        if fresh and cfg.initial_cluster_state == "new":
            bootstrap = bootstrap_entries(self.initial)
        self.transport = PeerTransport(
            self.member_id, self.cluster_id, step=lambda m: self.raft.step(m),
            unreachable=lambda pid: self.raft.report_unreachable(pid),
            snapshot_status=lambda pid, failed: self.raft.report_snapshot(pid, failed),
            snapshot_source=self._snapshot_copy, snapshot_dir=self.paths.snap_dir,
            members_info=self._members_info, is_removed=lambda i: i in self.membership.removed,
            on_removed=self._removed, tls=cfg.peer_tls)
        self.transport.set_members(self.membership.sorted() or self.initial)
        self.raft = RaftDriver(
            self.member_id, self.wal, self.paths.snap_dir,
            election_tick=max(2, cfg.election_timeout // cfg.heartbeat_interval),
            heartbeat_ms=cfg.heartbeat_interval, apply=self._apply_ready,
            on_leader_change=self._leader_changed, transport=self.transport,
            pre_vote=cfg.pre_vote)
        self.raft.max_snapshots, self.raft.max_wals = cfg.max_snapshots, cfg.max_wals
        self.raft.restore(contents, applied, bootstrap)
        self.proposer = Proposer(self.loop, self.member_id, int(time.time() * 1000),
                                 self.raft.wake)
        self.raft.proposer = self.proposer
        self.raft.read_state = self.read_state
        self.raft.start()
        self._timers = [self.loop.create_task(self._lease_expiry_loop()),
                        self.loop.create_task(self._progress_loop())]
        if cfg.experimental_enable_lease_checkpoint:
            self._timers.append(self.loop.create_task(self._lease_checkpoint_loop()))
        log.info("member %x of cluster %x: revision %d, applied index %d, term %d",
                 self.member_id, self.cluster_id, self.store.current_rev, applied,
                 self.raft.term)

    def _store_identity(self) -> None:
        """Member and cluster IDs where workers' own read transactions find them."""
        with self.backend.begin_write() as txn:
            txn.put(META_MEMBER_ID, u64(self.member_id), db=self.backend.meta)
            txn.put(META_CLUSTER_ID, u64(self.cluster_id), db=self.backend.meta)

    def read_index_for_worker(self):
        """A worker's linearizable read: resolves with the applied index (u64) once
        it covers everything committed when the read arrived."""
        return self._linearizable(lambda: u64(self.applied_index))

    def _open_state(self) -> None:
        """Everything derived from the backend (again after a snapshot install)."""
        self.store = KVStore(self.backend)
        ticks = max(1, self.cfg.election_timeout // self.cfg.heartbeat_interval)
        min_ttl = -(-((3 * ticks) // 2) * self.cfg.heartbeat_interval // 1000)  # etcd's minTTL
        self.lessor = Lessor(self.backend, max(1, min_ttl))
        self.lessor.restore(self.store)
        self.kv = kvops.KVApplier(self.store, self.lessor)
        self.membership = Membership(self.backend)
        self.alarms = Alarms(self.backend)
        with self.backend.begin_read() as txn:
            self._used_bytes = used_bytes(self.backend, txn)
        self.auth.load(self.backend)
        self._auth_changed()
        if hasattr(self, "watch_hub"):
            self.watch_hub.store = self.store
        else:
            self.watch_hub = WatchHub(self.store, self._header, self.cfg.max_request_bytes)

    async def start_peer(self) -> None:
        try:
            await self.transport.listen(self.cfg.listen_peer_urls)
        except OSError as e:
            raise SystemExit(f"kvcore: listen on peer URL {self.cfg.listen_peer_urls[0]}: "
                             f"{e.strerror}")

    def _members_info(self) -> dict:
        return {"cluster_id": self.cluster_id,
                "members": [json.loads(m.to_json()) for m in self.membership.sorted()]}

    def _removed(self) -> None:
        if not self.stopped.done():
            log.warning("this member has been permanently removed from the cluster; stopping")
            self.stopped.set_result("removed from the cluster")

    async def _snapshot_copy(self):
        """A consistent copy of the backend's data file to send to a follower, and the
        Raft snapshot metadata that matches it: (path, index, term, ConfState).

        Like etcd's merged snapshot message, the copy is taken now, so it describes
        the applied state now (with today's membership, which a member added since
        the last snapshot needs to accept it)."""
        d = os.path.join(self.paths.snap_dir, f"send-{time.time_ns()}")
        os.makedirs(d)

        def copy():
            self.backend.env.copy(d, compact=True)
            env = lmdb.open(d, readonly=True, lock=False, max_dbs=16)
            try:
                with env.begin() as txn:
                    meta = env.open_db(b"meta", txn=txn, create=False)
                    ci, term, cs = (txn.get(k, db=meta) for k in (
                        META_CONSISTENT_INDEX, META_TERM, META_CONF_STATE))
            finally:
                env.close()
            return (from_u64(ci) if ci else 0, from_u64(term) if term else 0,
                    rcodec.decode_conf_state(cs)[0] if cs else None)

        index, term, cs = await self.loop.run_in_executor(None, copy)
        # The caller sends and deletes the file; the empty directory goes with it.
        path = d + ".mdb"
        os.replace(os.path.join(d, "data.mdb"), path)
        os.rmdir(d)
        return path, index, term, cs

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.close()
        for t in getattr(self, "_timers", ()):
            t.cancel()
        if hasattr(self, "raft"):
            await self.raft.stop()
        self.wal.close()
        self.backend.close()

    @property
    def applied_index(self) -> int:
        return self.raft.applied

    # ---- applying what Raft committed ----

    def _leader_changed(self, old: int, new: int) -> None:
        if new:
            self.loop.call_soon(self._publish_self)

    def _apply_ready(self, snapshot, entries: list) -> None:
        if snapshot is not None:
            self._install_snapshot(snapshot)
        if entries:
            self._apply(entries)
        applied = self.raft.applied if not entries else entries[-1].index
        if applied - self._last_snapshot >= self.cfg.snapshot_count:
            self._last_snapshot = applied
            self.loop.create_task(self.raft.snapshot(
                applied, self.backend.sync, self.cfg.experimental_snapshot_catchup_entries))

    def _install_snapshot(self, snapshot) -> None:
        """Replace the backend with the leader's copy that came with the snapshot."""
        index = snapshot.metadata.index
        path = self.transport.received_snapshots.pop(index, None)
        if path is None:
            raise RuntimeError(f"the data of snapshot {index} was not received")
        map_size = self.backend.env.info()["map_size"]
        self.backend.close()
        backend_install(self.paths.db_path, path)
        self.backend = Backend(self.paths.db_path, map_size=map_size)
        self._open_state()
        self._store_identity()
        for conn in list(self.connections):
            conn.send(0, 0, fr.RELOAD, b"")   # workers reopen the new file
        self.raft.conf_state = snapshot.metadata.conf_state
        self.transport.set_members(self.membership.sorted())
        self.watch_hub.resync_all()
        self.schedule_catch_up()
        log.info("installed snapshot at index %d: revision %d, applied index %d", index,
                 self.store.current_rev, self.store.consistent_index)

    def _apply(self, entries: list) -> None:
        results = []
        consistent = self.store.consistent_index
        conf_changed = False
        with self.backend.begin_write() as txn:
            for e in entries:
                if e.type == EntryConfChange:
                    self._apply_conf_change(txn, e, e.index <= consistent)
                    conf_changed = True
                    continue
                if e.index <= consistent or not e.data:
                    continue  # already in the backend (replay), or a leader's empty entry
                rid, op, req = decode_entry_data(e.data)
                try:
                    res = self._apply_op(txn, op, req, e.term)
                except GrpcError as err:
                    res = err
                results.append((rid, res))
            last = entries[-1]
            if last.index > consistent:
                self.store.set_consistent_index(txn, last.index, last.term)
            self._used_bytes = used_bytes(self.backend, txn)   # for the space quota
        changes, self._changes = self._changes, []
        if changes:
            with self.backend.begin_read() as rtxn:
                for rev, cs in changes:
                    self.watch_hub.notify(rtxn, rev, cs)
        if self.watch_hub.unsynced:
            self.schedule_catch_up()
        self.metrics.proposals_committed.inc(len(entries))
        waiter = self.proposer.waiter
        for rid, res in results:
            fut = waiter(rid)
            if fut is None or fut.done():
                continue
            if isinstance(res, GrpcError):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        if conf_changed:
            self._conf_changed()

    def _apply_conf_change(self, txn, e, replayed: bool) -> None:
        cc = rcodec.decode_conf_change(e.data)
        self.raft.stop_local_reads()   # re-decided once this apply is done
        self.raft.conf_state = self.raft.node.apply_conf_change(cc)
        if replayed:
            return
        # A copy of the backend sent as a snapshot carries the membership with it.
        txn.put(META_CONF_STATE, rcodec.encode_conf_state(self.raft.conf_state),
                db=self.backend.meta)
        for ch in cc.changes:
            if ch.type in (ConfChangeType.AddNode, ConfChangeType.AddLearnerNode,
                           ConfChangeType.UpdateNode):
                m = Member.from_json(cc.context) if cc.context else None
                old = self.membership.members.get(ch.node_id)
                if m is None or m.id != ch.node_id:
                    m = old or Member(ch.node_id, "", [])
                if old is not None:  # promotion or peer-URL update keeps the rest
                    m.name = m.name or old.name
                    m.client_urls = m.client_urls or old.client_urls
                m.is_learner = ch.type == ConfChangeType.AddLearnerNode or (
                    ch.type == ConfChangeType.UpdateNode and old is not None and old.is_learner)
                self.membership.save(txn, m)
            elif ch.type == ConfChangeType.RemoveNode:
                self.membership.remove(txn, ch.node_id)
        # Members' own waiters (MemberAdd etc.) are resolved by the cluster service.
        waiter = getattr(self, "_conf_waiters", {}).pop(e.data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(e.index)

    def _conf_changed(self) -> None:
        self.transport.set_members(self.membership.sorted())
        if self.member_id in self.membership.removed:
            self._removed()
        cs = self.raft.conf_state
        if cs.voters == [self.member_id] and not cs.learners and not self.raft.lead:
            self.raft.campaign_soon()

    def _publish_self(self) -> None:
        """Record this member's name and client URLs through the log (etcd's publish)."""
        m = self.membership.members.get(self.member_id)
        want = (self.cfg.name, list(self.cfg.advertise_client_urls))
        if m is not None and (m.name, m.client_urls) == want:
            return
        req = json.dumps({"id": self.member_id, "name": want[0], "clientURLs": want[1]}).encode()
        fut = self.proposer.propose(OP_MEMBER_ATTR, req)
        fut.add_done_callback(_log_failure)

    def _apply_op(self, txn, op: int, req: bytes, term: int) -> bytes:
        if self.alarms.active and self._capped(op, req):
            raise etcd_error(EtcdError.NO_SPACE)
        if op == OP_ALARM:
            return self._apply_alarm(txn, req)
        w = self.store.write(txn)
        if op == OP_PUT:
            rev, body = self.kv.put(w, rpc_pb2.PutRequest.FromString(req))
        elif op == OP_DELETE:
            rev, body = self.kv.delete_range(w, rpc_pb2.DeleteRangeRequest.FromString(req))
        elif op == OP_TXN:
            rev, body = self.kv.txn(w, rpc_pb2.TxnRequest.FromString(req))
        elif op == OP_COMPACT:
            r = rpc_pb2.CompactionRequest.FromString(req)
            try:
                self.store.compact(txn, r.revision)
            except (CompactedError, FutureRevError) as e:
                raise kvops.mvcc_error(e)
            rev, body = self.store.current_rev, b""
            if self.watch_hub.unsynced:
                self.schedule_catch_up()
        elif op == OP_LEASE_GRANT:
            r = rpc_pb2.LeaseGrantRequest.FromString(req)
            if self.lessor.exists(r.ID):
                raise etcd_error(EtcdError.LEASE_EXIST)
            lease = self.lessor.grant(txn, r.ID, self.lessor.effective_ttl(r.TTL))
            rev = self.store.current_rev
            body = rpc_pb2.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl).SerializeToString()
        elif op == OP_LEASE_REVOKE:
            r = rpc_pb2.LeaseRevokeRequest.FromString(req)
            if not self.lessor.exists(r.ID):
                raise etcd_error(EtcdError.LEASE_NOT_FOUND)
            for key in self.lessor.revoke(txn, r.ID):
                w.delete_range(key, None)
            rev, body = w.rev, b""
        elif op == OP_MEMBER_ATTR:
            d = json.loads(req)
            m = self.membership.members.get(d["id"])
            if m is not None:
                m.name, m.client_urls = d["name"], list(d["clientURLs"])
                self.membership.save(txn, m)
            rev, body = self.store.current_rev, b""
        elif op == OP_AUTH:
            resp = self.auth.apply(txn, AUTH_OPS[req[0]], req[1:])
            rev, body = self.store.current_rev, resp.SerializeToString()
        elif op == OP_LEASE_CHECKPOINT:
            r = rpc_pb2.LeaseCheckpointRequest.FromString(req)
            for cp in r.checkpoints:
                self.lessor.checkpoint(txn, cp.ID, cp.remaining_TTL)
            rev, body = self.store.current_rev, b""
        else:
            raise GrpcError(StatusCode.INTERNAL, f"unknown proposal type {op}")
        w.end()
        if w.changes:
            self.lessor.on_changes(w.changes)
            self._changes.append((w.begin_rev + 1, w.changes))
        return wire.with_header(self._header(rev), body)

    def _header(self, rev: int) -> bytes:
        return self._headers.get(self.cluster_id, self.member_id, rev, self.raft.term)

    @property
    def request_timeout(self) -> float:
        """etcd's: 5 s plus two election timeouts."""
        return 5.0 + 2 * self.cfg.election_timeout / 1000.0

    def _propose(self, op: int, req: bytes):
        if len(req) > self.cfg.max_request_bytes:
            raise etcd_error(EtcdError.REQUEST_TOO_LARGE)
        if not self.raft.lead:
            raise etcd_error(EtcdError.NO_LEADER)
        fut = self.proposer.propose(op, req)
        self.deadlines.add(fut)
        return fut

    def _linearizable(self, fn):
        """Run ``fn`` once this member has applied everything committed when the
        read arrived (ReadIndex, batched per loop turn by the raft driver)."""
        out = self.loop.create_future()

        def ready(f):
            if out.done():
                return
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
                return
            try:
                out.set_result(fn())
            except Exception as e:
                out.set_exception(e)

        self.raft.read_index().add_done_callback(ready)
        self.deadlines.add(out)
        return out

    # ---- handlers: request bytes -> response bytes, or a future of them ----

    def _register(self) -> None:
        u = self.unary
        u[KV + "Range"] = self.range
        u[KV + "Put"] = self.put
        u[KV + "DeleteRange"] = self.delete_range
        u[KV + "Txn"] = self.txn
        u[KV + "Compact"] = self.compact
        u[MAINT + "Status"] = self.status
        u[MAINT + "Alarm"] = self.alarm
        u[MAINT + "HashKV"] = self.hash_kv
        u[MAINT + "Defragment"] = self.defragment
        ClusterAPI(self).register(u)
        u[LEASE + "LeaseGrant"] = self.lease_grant
        u[LEASE + "LeaseRevoke"] = self.lease_revoke
        u[LEASE + "LeaseTimeToLive"] = self.lease_time_to_live
        u[LEASE + "LeaseLeases"] = self.lease_leases
        self.streams["/etcdserverpb.Watch/Watch"] = self._open_watch
        self.streams[MAINT + "Snapshot"] = lambda st: _SnapshotStream(self, st)
        self.auth_api.register(u)
        self.streams[LEASE + "LeaseKeepAlive"] = lambda st: _KeepAlive(self, st)
        lock.register(self, u, self.streams)
        election.register(self, u, self.streams)

    def _read(self, fn):
        with self.backend.begin_read() as txn:
            return fn(ReadView(self.store, txn))

    def range(self, req: bytes):
        r = rpc_pb2.RangeRequest.FromString(req)
        kvops.check_range(r)

        def serve():
            rev, body = self._read(lambda view: self.kv.range(view, r))
            return wire.with_header(self._header(rev), body)
        return serve() if r.serializable else self._linearizable(serve)

    def put(self, req: bytes):
        kvops.check_put(rpc_pb2.PutRequest.FromString(req))
        return self._over_quota(len(req)) or self._propose(OP_PUT, req)

    def delete_range(self, req: bytes):
        kvops.check_delete(rpc_pb2.DeleteRangeRequest.FromString(req))
        return self._propose(OP_DELETE, req)

    def txn(self, req: bytes):
        r = rpc_pb2.TxnRequest.FromString(req)
        kvops.check_txn(r, self.cfg.max_txn_ops)
        kvops.check_intervals(r.success)
        kvops.check_intervals(r.failure)
        if kvops.is_txn_readonly(r):
            def serve():
                rev, body = self._read(lambda view: self.kv.txn(_ReadOnlyTxn(view), r))
                return wire.with_header(self._header(rev), body)
            return serve() if kvops.is_txn_serializable(r) else self._linearizable(serve)
        return (_txn_puts(r) and self._over_quota(len(req))) or self._propose(OP_TXN, req)

    def compact(self, req: bytes):
        return self._propose(OP_COMPACT, req)

    def status(self, req: bytes):
        me = self.membership.members.get(self.member_id)
        resp = rpc_pb2.StatusResponse(
            version=ETCD_VERSION, dbSize=self.backend.size(), leader=self.raft.lead,
            raftIndex=self.raft.committed, raftTerm=self.raft.term,
            raftAppliedIndex=self.applied_index, dbSizeInUse=self.backend.size_in_use(),
            dbSizeQuota=self.cfg.quota_backend_bytes,
            isLearner=bool(me and me.is_learner))
        if not self.raft.lead:
            resp.errors.append("etcdserver: no leader")
        resp.errors.extend(self.alarms.describe())
        return wire.with_header(self._header(self.store.current_rev), _without_header(resp))

    # ---- alarms and the space quota (kvcore/server/alarms.py) ----

    def alarm(self, req: bytes):
        r = rpc_pb2.AlarmRequest.FromString(req)
        if r.action == rpc_pb2.AlarmRequest.GET:
            return alarm_response(self._header(self.store.current_rev), self.alarms.list(r.alarm))
        return self._propose(OP_ALARM, req)

    def _apply_alarm(self, txn, req: bytes) -> bytes:
        r = rpc_pb2.AlarmRequest.FromString(req)
        changed = []
        if r.action == rpc_pb2.AlarmRequest.ACTIVATE and r.alarm != rpc_pb2.NONE:
            if self.alarms.activate(txn, r.memberID, r.alarm):
                changed.append((r.memberID, r.alarm))
                log.warning("alarm raised: memberID:%x alarm:%s", r.memberID,
                            rpc_pb2.AlarmType.Name(r.alarm))
        elif r.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            if self.alarms.deactivate(txn, r.memberID, r.alarm):
                changed.append((r.memberID, r.alarm))
                log.info("alarm disarmed: memberID:%x alarm:%s", r.memberID,
                         rpc_pb2.AlarmType.Name(r.alarm))
        return alarm_response(self._header(self.store.current_rev), changed)

    def _capped(self, op: int, req: bytes) -> bool:
        """While NOSPACE is raised, what etcd's capped applier refuses: Put, a Txn
        that puts, LeaseGrant."""
        if not self.alarms.nospace:
            return False
        if op in (OP_PUT, OP_LEASE_GRANT):
            return True
        return op == OP_TXN and _txn_puts(rpc_pb2.TxnRequest.FromString(req))

    def _over_quota(self, cost: int):
        """etcd's quota check before proposing a write. None when it fits; over the
        quota, the refusal: at once if this member's NOSPACE alarm is already
        raised, else a future that fails once the alarm it proposes is applied
        (etcd waits for it too, so 'alarm list' right after shows it)."""
        if self._used_bytes + cost <= self.cfg.quota_backend_bytes:
            return None
        if (self.member_id, rpc_pb2.NOSPACE) in self.alarms.active or not self.raft.lead:
            raise etcd_error(EtcdError.NO_SPACE)
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE,
                                   memberID=self.member_id, alarm=rpc_pb2.NOSPACE)
        refused = self.loop.create_future()

        def raised(f):
            if not f.cancelled() and f.exception() is not None:
                log.warning("raising the NOSPACE alarm failed: %s", f.exception())
            if not refused.done():
                refused.set_exception(etcd_error(EtcdError.NO_SPACE))
        self._propose(OP_ALARM, req.SerializeToString()).add_done_callback(raised)
        return refused

    def hash_kv(self, req: bytes):
        r = rpc_pb2.HashKVRequest.FromString(req)
        try:
            h, compact_rev, hash_rev = self._read(lambda view: self.store.hash_kv(view.txn, r.revision))
        except (CompactedError, FutureRevError) as e:
            raise kvops.mvcc_error(e)
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact_rev, hash_revision=hash_rev)
        return wire.with_header(self._header(self.store.current_rev), _without_header(resp))

    def defragment(self, req: bytes):
        return wire.with_header(self._header(self.store.current_rev), b"")

    # ---- auth (kvcore/server/auth.py, auth_api.py) ----

    def _auth_changed(self) -> None:
        """Workers serve Range locally only while auth is off (reads.py)."""
        self.read_state.set_auth(self.auth.enabled)

    # ---- watch ----

    def _open_watch(self, st):
        ws = WatchStream(self.watch_hub, st)
        st.on_credit = self.schedule_catch_up
        return ws

    def schedule_catch_up(self) -> None:
        if not self._catchup_scheduled:
            self._catchup_scheduled = True
            self.loop.call_soon(self._catch_up)

    def _catch_up(self) -> None:
        self._catchup_scheduled = False
        if not self.watch_hub.unsynced:
            return
        with self.backend.begin_read() as txn:
            more = self.watch_hub.catch_up(txn)
        if more:
            # Watchers with room left still have history: continue next turn;
            # watchers without room resume when their credit returns.
            if any(w.stream.can_send() for w in self.watch_hub.unsynced):
                self.schedule_catch_up()

    async def _progress_loop(self) -> None:
        interval = self.cfg.experimental_watch_progress_notify_interval
        while True:
            await asyncio.sleep(interval)
            self.watch_hub.progress()

    # ---- leases ----

    def lease_grant(self, req: bytes):
        r = rpc_pb2.LeaseGrantRequest.FromString(req)
        if r.TTL > MAX_LEASE_TTL:
            raise etcd_error(EtcdError.LEASE_TTL_TOO_LARGE)
        if r.ID == 0:
            import secrets
            while r.ID == 0 or self.lessor.exists(r.ID):
                r.ID = secrets.randbits(63)
        elif self.lessor.exists(r.ID):
            raise etcd_error(EtcdError.LEASE_EXIST)
        return (self._over_quota(len(req))
                or self._propose(OP_LEASE_GRANT, r.SerializeToString()))

    def lease_revoke(self, req: bytes):
        r = rpc_pb2.LeaseRevokeRequest.FromString(req)
        if not self.lessor.exists(r.ID):
            raise etcd_error(EtcdError.LEASE_NOT_FOUND)
        return self._propose(OP_LEASE_REVOKE, req)

    def lease_time_to_live(self, req: bytes):
        r = rpc_pb2.LeaseTimeToLiveRequest.FromString(req)
        info = self.lessor.time_to_live(r.ID)
        if info is None:
            resp = rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1)
        else:
            ttl, granted, keys = info
            resp = rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID, TTL=ttl, grantedTTL=granted,
                                                   keys=keys if r.keys else [])
        return wire.with_header(self._header(self.store.current_rev), _without_header(resp))

    def lease_leases(self, req: bytes):
        resp = rpc_pb2.LeaseLeasesResponse(
            leases=[rpc_pb2.LeaseStatus(ID=i) for i in sorted(self.lessor.leases)])
        return wire.with_header(self._header(self.store.current_rev), _without_header(resp))

    def renew(self, lease_id: int) -> int:
        ttl = self.lessor.renew(lease_id)
        lease = self.lessor.lookup(lease_id)
        if ttl and lease is not None and lease.remaining:
            # A checkpointed remaining TTL no longer holds after a renewal.
            lease.remaining = 0
            self._propose_internal(OP_LEASE_CHECKPOINT, rpc_pb2.LeaseCheckpointRequest(
                checkpoints=[rpc_pb2.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)]))
        return ttl

    def _propose_internal(self, op: int, msg) -> None:
        fut = self.proposer.propose(op, msg.SerializeToString())
        fut.add_done_callback(_log_failure)

    async def _lease_expiry_loop(self) -> None:
        """The leader revokes expired leases through the log (etcd checks every 500 ms)."""
        while True:
            await asyncio.sleep(0.5)
            for lid in self.lessor.expired():
                self.metrics.lease_expired.inc()
                lease = self.lessor.lookup(lid)
                lease.revoking = True
                fut = self.proposer.propose(OP_LEASE_REVOKE,
                                            rpc_pb2.LeaseRevokeRequest(ID=lid).SerializeToString())
                fut.add_done_callback(lambda f, l=lease: _revoke_done(f, l))

    async def _lease_checkpoint_loop(self) -> None:
        interval = self.cfg.experimental_lease_checkpoint_interval
        while True:
            await asyncio.sleep(interval)
            cps = self.lessor.checkpoints()
            if cps:
                self._propose_internal(OP_LEASE_CHECKPOINT, rpc_pb2.LeaseCheckpointRequest(
                    checkpoints=[rpc_pb2.LeaseCheckpoint(ID=i, remaining_TTL=t) for i, t in cps]))

    def health(self) -> Optional[str]:
        """None when healthy, else the reason (etcd's /health)."""
        return None


def _expire(fut) -> None:
    if not fut.done():
        fut.set_exception(etcd_error(EtcdError.TIMEOUT))


def _txn_puts(r) -> bool:
    """Whether a Txn would write a value in either branch (etcd's txn cost > 0)."""
    for op in list(r.success) + list(r.failure):
        if op.HasField("request_put"):
            return True
        if op.HasField("request_txn") and _txn_puts(op.request_txn):
            return True
    return False


def _log_failure(fut) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("internal proposal failed: %s", fut.exception())


def _revoke_done(fut, lease) -> None:
    if fut.cancelled() or fut.exception() is not None:
        lease.revoking = False  # try again at the next check


class _SnapshotStream:
    """Maintenance.Snapshot: a consistent copy of the backend, streamed in chunks
    within the stream's flow-control window, followed (as etcd does) by the SHA-256
    of everything before it so 'etcdctl snapshot save' can verify the file."""

    CHUNK = 32 * 1024
    keep_after_half_close = True

    def __init__(self, core: Core, out):
        self.core = core
        self.out = out
        self.task = None
        self._room = None

    def on_message(self, payload: bytes) -> None:
        if self.task is None:
            self.out.on_credit = self._credit
            self.task = self.core.loop.create_task(self._run())

    def _credit(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    async def _run(self) -> None:
        import hashlib
        core = self.core
        path = None
        try:
            path = (await core._snapshot_copy())[0]
            size = os.path.getsize(path)
            total = size + 32
            sha = hashlib.sha256()
            sent = 0
            first = True
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(self.CHUNK)
                    if not chunk:
                        chunk = sha.digest()
                    else:
                        sha.update(chunk)
                    sent += len(chunk)
                    while not self.out.can_send():
                        if self.out.closed:
                            return
                        self._room = core.loop.create_future()
                        await self._room
                    resp = rpc_pb2.SnapshotResponse(remaining_bytes=total - sent, blob=chunk,
                                                    version=ETCD_VERSION)
                    body = _without_header(resp)
                    if first:
                        body = wire.with_header(core._header(core.store.current_rev), body)
                        first = False
                    self.out.send(body)
                    if sent >= total:
                        break
            self.out.end()
        except Exception as e:
            log.warning("snapshot stream failed: %s", e)
            self.out.end(StatusCode.INTERNAL, str(e))
        finally:
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


class _KeepAlive:
    """LeaseKeepAlive stream: each request renews a lease (leader-local)."""

    def __init__(self, core: Core, out):
        self.core = core
        self.out = out

    def on_message(self, payload: bytes) -> None:
        r = rpc_pb2.LeaseKeepAliveRequest.FromString(payload)
        ttl = self.core.renew(r.ID)
        resp = rpc_pb2.LeaseKeepAliveResponse(ID=r.ID, TTL=ttl)
        self.out.send(wire.with_header(self.core._header(self.core.store.current_rev),
                                       _without_header(resp)))


def _without_header(msg) -> bytes:
    """A response message's bytes with field 1 (header) unset."""
    msg.ClearField("header")
    return msg.SerializeToString()


class _ReadOnlyTxn:
    """Lets a read-only Txn run on a ReadView through the same applier code."""

    def __init__(self, view: ReadView):
        self.view = view
        self.begin_rev = view.rev
        self.changes: list = []
        self.rev = view.rev

    def range(self, key, end, rev=0, limit=0, count_only=False):
        return self.view.range(key, end, rev, limit, count_only)
