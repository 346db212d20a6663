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
import concurrent.futures
import logging
import os
import time
from typing import Callable, Optional

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2, wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.lease.lessor import MAX_LEASE_TTL, Lessor
from kvcore.mvcc.store import CompactedError, FutureRevError, KVStore, ReadView
from kvcore.mvcc.watch import WatchHub, WatchStream
from kvcore.server import kv as kvops
from kvcore.server.config import Config
from kvcore.server.metrics import CoreMetrics
from kvcore.server.membership import Member, cluster_id, initial_members, member_id
from kvcore.server.solo import SoloNode
from kvcore.storage.backend import Backend
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

KV = "/etcdserverpb.KV/"
MAINT = "/etcdserverpb.Maintenance/"
CLUSTER = "/etcdserverpb.Cluster/"
LEASE = "/etcdserverpb.Lease/"


class MemberData:
    """Where a member keeps its files, like etcd: member/wal and member/snap/db."""

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
        self.members = initial_members(cfg.initial_cluster_map(), cfg.initial_cluster_token)
        self.member_id = member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
        self.cluster_id = cluster_id([m.id for m in self.members])
        for m in self.members:
            if m.id == self.member_id:
                m.client_urls = list(cfg.advertise_client_urls)
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wal")
        self._persisting = False
        self._since_snapshot = 0
        self.unary: dict[str, Callable] = {}
        self.streams: dict[str, Callable] = {}
        self._changes: list = []   # (revision, changes) applied in the current batch
        self._catchup_scheduled = False
        self._register()

    # ---- startup ----

    def open(self) -> None:
        os.makedirs(self.paths.snap_dir, exist_ok=True)
        os.chmod(self.cfg.data_dir, 0o700)
        self.wal = WAL(self.paths.wal_dir)
        contents: WalContents = self.wal.open(self.member_id, self.cluster_id)
        if contents.member_id and contents.member_id != self.member_id:
            raise SystemExit(f"data dir {self.cfg.data_dir} belongs to member "
                             f"{contents.member_id:x}, not {self.member_id:x} (check --name, "
                             "--initial-advertise-peer-urls and --initial-cluster-token)")
        if contents.repaired_bytes:
            log.warning("WAL: repaired a torn tail (%d bytes of an unfinished write dropped)",
                        contents.repaired_bytes)
        map_size = max(self.cfg.quota_backend_bytes * 2, 1 << 30)
        self.backend = Backend(self.paths.db_path, map_size=map_size)
        self.store = KVStore(self.backend)
        ticks = max(1, self.cfg.election_timeout // self.cfg.heartbeat_interval)
        min_ttl = -(-((3 * ticks) // 2) * self.cfg.heartbeat_interval // 1000)  # etcd's minTTL
        self.lessor = Lessor(self.backend, max(1, min_ttl))
        self.lessor.restore(self.store)
        self.kv = kvops.KVApplier(self.store, self.lessor)
        self.watch_hub = WatchHub(self.store, self._header, self.cfg.max_request_bytes)
        self.metrics = CoreMetrics(self)
        applied = self.store.consistent_index
        last_index = contents.entries[-1][0] if contents.entries else max(
            contents.snapshot_index, applied)
        self.node = SoloNode(self.member_id, contents.state, last_index)
        # Replay what the WAL has beyond the backend's applied index.
        todo = [e for e in contents.entries if e[0] > applied]
        if todo:
            self._apply(todo, replay=True)
            log.info("replayed %d WAL entries (%d..%d)", len(todo), todo[0][0], todo[-1][0])
        self.applied_index = max(applied, todo[-1][0] if todo else 0)
        self.proposer = Proposer(self.loop, self.member_id, int(time.time() * 1000),
                                 self._on_batch)
        self._on_batch()  # persist the leader's empty entry
        self._timers = [self.loop.create_task(self._lease_expiry_loop()),
                        self.loop.create_task(self._progress_loop())]
        if self.cfg.experimental_enable_lease_checkpoint:
            self._timers.append(self.loop.create_task(self._lease_checkpoint_loop()))
        log.info("member %x of cluster %x: revision %d, applied index %d, term %d",
                 self.member_id, self.cluster_id, self.store.current_rev,
                 self.applied_index, self.node.term)

    def close(self) -> None:
        for t in getattr(self, "_timers", ()):
            t.cancel()
        self._io.shutdown(wait=True)
        self.wal.close()
        self.backend.close()

    # ---- write path ----

    def _on_batch(self) -> None:
        if not self._persisting:
            self._persisting = True
            self.loop.create_task(self._persist_loop())

    async def _persist_loop(self) -> None:
        try:
            while True:
                datas = self.proposer.take()
                if datas:
                    self.node.propose(datas)
                if not self.node.has_ready():
                    break
                rd = self.node.ready()
                t0 = time.perf_counter()
                await self.loop.run_in_executor(self._io, self.wal.save, rd.hard_state, rd.entries)
                t1 = time.perf_counter()
                self._apply(rd.committed)
                m = self.metrics
                m.wal_fsync.observe(t1 - t0)
                m.backend_commit.observe(time.perf_counter() - t1)
                m.batch_size.observe(len(rd.entries))
                m.proposals_committed.inc(len(rd.committed))
                self.node.advance(rd)
                self._since_snapshot += len(rd.committed)
                if self._since_snapshot >= self.cfg.snapshot_count:
                    await self._snapshot()
        except BaseException:
            log.exception("fatal error in the write path; stopping the member")
            os._exit(1)  # fail-stop: a restart replays the WAL
        finally:
            self._persisting = False

    async def _snapshot(self) -> None:
        """Make LMDB durable up to the applied index, then let the WAL go."""
        index, term = self.applied_index, self.node.term
        self._since_snapshot = 0

        def work():
            self.backend.sync()
            self.wal.save_snapshot(index, term)
            return self.wal.release_before(index)

        removed = await self.loop.run_in_executor(self._io, work)
        log.info("snapshot at index %d; released %d WAL segment(s)", index, removed)

    def _apply(self, entries: list, replay: bool = False) -> None:
        results = []
        last = None
        with self.backend.begin_write() as txn:
            for index, term, _etype, data in entries:
                last = (index, term)
                if not data:
                    continue
                rid, op, req = decode_entry_data(data)
                try:
                    res = self._apply_op(txn, op, req, term)
                except GrpcError as e:
                    res = e
                results.append((rid, res))
            if last:
                self.store.set_consistent_index(txn, last[0], last[1])
        if last:
            self.applied_index = last[0]
        changes, self._changes = self._changes, []
        if replay:
            return
        if changes:
            with self.backend.begin_read() as rtxn:
                for rev, cs in changes:
                    self.watch_hub.notify(rtxn, rev, cs)
        if self.watch_hub.unsynced:
            self.schedule_catch_up()
        waiter = self.proposer.waiter
        for rid, res in results:
            fut = waiter(rid)
            if fut is None or fut.done():
                continue
            if isinstance(res, GrpcError):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def _apply_op(self, txn, op: int, req: bytes, term: int) -> bytes:
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
        return wire.header(self.cluster_id, self.member_id, rev, self.node.term)

    def _propose(self, op: int, req: bytes):
        if len(req) > self.cfg.max_request_bytes:
            raise etcd_error(EtcdError.REQUEST_TOO_LARGE)
        return self.proposer.propose(op, req)

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
        u[CLUSTER + "MemberList"] = self.member_list
        u[LEASE + "LeaseGrant"] = self.lease_grant
        u[LEASE + "LeaseRevoke"] = self.lease_revoke
        u[LEASE + "LeaseTimeToLive"] = self.lease_time_to_live
        u[LEASE + "LeaseLeases"] = self.lease_leases
        self.streams["/etcdserverpb.Watch/Watch"] = self._open_watch
        self.streams[LEASE + "LeaseKeepAlive"] = lambda st: _KeepAlive(self, st)

    def _read(self, fn):
        with self.backend.begin_read() as txn:
            return fn(ReadView(self.store, txn))

    def range(self, req: bytes):
        r = rpc_pb2.RangeRequest.FromString(req)
        kvops.check_range(r)
        rev, body = self._read(lambda view: self.kv.range(view, r))
        return wire.with_header(self._header(rev), body)

    def put(self, req: bytes):
        kvops.check_put(rpc_pb2.PutRequest.FromString(req))
        return self._propose(OP_PUT, req)

    def delete_range(self, req: bytes):
        kvops.check_delete(rpc_pb2.DeleteRangeRequest.FromString(req))
        return self._propose(OP_DELETE, req)

    def txn(self, req: bytes):
        r = rpc_pb2.TxnRequest.FromString(req)
        kvops.check_txn(r, self.cfg.max_txn_ops)
        kvops.check_intervals(r.success)
        kvops.check_intervals(r.failure)
        if kvops.is_txn_readonly(r):
            def run(view):
                w = _ReadOnlyTxn(view)
                return self.kv.txn(w, r)
            rev, body = self._read(run)
            return wire.with_header(self._header(rev), body)
        return self._propose(OP_TXN, req)

    def compact(self, req: bytes):
        return self._propose(OP_COMPACT, req)

    def status(self, req: bytes):
        resp = rpc_pb2.StatusResponse(
            version=ETCD_VERSION, dbSize=self.backend.size(), leader=self.node.lead,
            raftIndex=self.node.commit, raftTerm=self.node.term,
            raftAppliedIndex=self.applied_index, dbSizeInUse=self.backend.size_in_use(),
            dbSizeQuota=self.cfg.quota_backend_bytes, isLearner=False)
        return wire.with_header(self._header(self.store.current_rev), _without_header(resp))

    def alarm(self, req: bytes):
        return wire.with_header(self._header(self.store.current_rev), b"")

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

    def member_list(self, req: bytes):
        resp = rpc_pb2.MemberListResponse(members=[
            rpc_pb2.Member(ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls,
                           isLearner=m.is_learner) for m in self.members])
        hdr = wire.header(self.cluster_id, self.member_id, 0, self.node.term)
        return wire.with_header(hdr, _without_header(resp))

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
        return self._propose(OP_LEASE_GRANT, r.SerializeToString())

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


def _log_failure(fut) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("internal proposal failed: %s", fut.exception())


def _revoke_done(fut, lease) -> None:
    if fut.cancelled() or fut.exception() is not None:
        lease.revoking = False  # try again at the next check


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
