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
import json
import logging
import os
import time

from google.protobuf.message import DecodeError

from kvcore import ETCD_VERSION, _ext, failpoints, logs
from kvcore.api import wire
from kvcore.api.errors import EtcdError, etcd_error
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.lease.lessor import Lessor
from kvcore.mvcc.store import KVStore, ReadView
from kvcore.mvcc.watch import WatchHub
from kvcore.raft import codec as rcodec
from kvcore.raft.types import ConfChangeType, EntryConfChange
from kvcore.server import entry
from kvcore.server.alarms import Alarms, used_bytes
from kvcore.auth import tokens
from kvcore.auth.store import AuthStore
from kvcore.server.config import Config
from kvcore.server.deadlines import Deadlines
from kvcore.server.leaderless import LeaderWait
from kvcore.server.membership import (Member, Membership, cluster_id, initial_members,
                                      member_id)
from kvcore.server.peer import PeerTransport
from kvcore.server.peer_lease import LeaseForwarder
from kvcore.raftdriver import RaftDriver, bootstrap_entries
from kvcore.raftdriver.driver import SNAPSHOT_BYTES
from kvcore.raftdriver.walstore import WalStore
from kvcore.ipc import framing as fr
from kvcore.metrics import listener as probes
from kvcore.metrics.member import MemberMetrics
from kvcore.ipc.readstate import ReadState
from kvcore.ipc.server import DirectAnswers
from kvcore.services import register_all
from kvcore.services.quota import Quota
from kvcore.services.registry import Registry
from kvcore.storage.backend import (META_CLUSTER_ID, META_CONF_STATE, META_CONSISTENT_INDEX,
                                    META_MEMBER_ID, META_TERM, Backend, from_u64, u64)
from kvcore import storage
from kvcore.storage import verify
from kvcore.storage.backend import DATA_FILE
from kvcore.storage.backend import install as backend_install
from kvcore.storage import walfill
from kvcore.storage.wal import WAL, WalContents

log = logging.getLogger("kvcore.core")

# etcd's maxGapBetweenApplyAndCommitIndex: a member this far behind in applying what
# is committed (a long defragmentation holds the applies) refuses new proposals.
MAX_APPLY_GAP = 5000
# grpc-go's answer to a request it cannot unmarshal
UNPARSABLE = "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data"


# etcd's applierV3Corrupt: what a raised CORRUPT alarm refuses (reads still work)
CORRUPT_REFUSED = frozenset((entry.OP_PUT, entry.OP_DELETE, entry.OP_TXN, entry.OP_COMPACT,
                             entry.OP_LEASE_GRANT, entry.OP_LEASE_REVOKE))


class MemberData:
    """Where a member keeps its files, like etcd: member/wal and member/snap/db
    (for kvcore an LMDB directory: data.mdb and lock.mdb)."""

    def __init__(self, data_dir: str, wal_dir: str = ""):
        self.data_dir = data_dir
        self.wal_dir = wal_dir or os.path.join(data_dir, "member", "wal")
        self.snap_dir = os.path.join(data_dir, "member", "snap")
        self.db_path = os.path.join(self.snap_dir, "db")


class Core:
    """The process shell of a member and the server context its services use
    (kvcore/services/context.py lists what they may touch)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.loop = asyncio.get_event_loop()
        self.paths = MemberData(cfg.data_dir, cfg.wal_dir)
        self.initial = initial_members(cfg.initial_cluster_map(), cfg.initial_cluster_token)
        # By name in the initial cluster: with --discovery-srv its URLs are the records'
        # host names, from which every member derives this member's ID (as etcd).
        mine = next((m for m in self.initial if m.name == cfg.name), None)
        self.member_id = mine.id if mine else member_id(cfg.initial_advertise_peer_urls,
                                                         cfg.initial_cluster_token)
        self.cluster_id = cluster_id([m.id for m in self.initial])
        self._changes: list = []   # (revision, changes) applied in the current batch
        self._staged = None        # stage_apply's work, committed by the next _apply
        self._catchup_scheduled = False
        self._last_snapshot = 0
        self._applied_bytes = 0    # entry data applied since the last snapshot
        self._conf_waiters: dict = {}   # encoded ConfChange -> future of its applied index
        # future of a proposal -> its request as the service decoded it, for this
        # member's apply (propose(decoded=)); dropped when the future is done
        self._decoded: dict = {}
        self.transport = None
        self.connections: set = set()   # IPC connections of the workers
        self.answers = DirectAnswers()   # proposals the apply answers to the worker itself
        self._headers = wire.Headers()
        self.deadlines = Deadlines(self.loop, self.request_timeout, self._proposal_expired)
        self.read_deadlines = Deadlines(self.loop, self.request_timeout, self._read_expired)
        self.leader_wait = LeaderWait(self.loop, self.request_timeout, self._propose_now,
                                      self._proposal_failed)
        self.read_state = ReadState()   # shared with the workers (kvcore/ipc/readstate.py)
        # The leader's lease expiries, renewed by the workers too (ext/leaseclock.pyx);
        # None in pure-Python mode: every keep-alive comes here.
        clock = _ext.load("leaseclock")
        self.lease_clock = clock.LeaseClock() if clock is not None else None
        self.auth = AuthStore(tokens.provider(cfg.auth_token, float(cfg.auth_token_ttl)))
        self._defrag_lock = None   # asyncio.Lock, made on the loop: one defrag at a time
        self.auth.on_change = self._auth_changed
        self.quota = Quota(self)
        self.stopped = self.loop.create_future()   # set when this member must stop
        self.registry = Registry()
        self.services = register_all(self, self.registry)
        self.unary = self.registry.unary       # gRPC path -> handler (the IPC server's table)
        self.streams = self.registry.streams
        self._appliers = self.registry.appliers
        self.auth_api = self.services["auth"]  # permission checks of the IPC server

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
        storage.private_dirs(self.paths.snap_dir)
        os.chmod(cfg.data_dir, 0o700)
        # zeros written and synced ahead of the log (none when nothing is synced)
        self.wal = WAL(self.paths.wal_dir, fill_ahead=0 if cfg.unsafe_no_fsync else walfill.AHEAD)
        self.wal.unsafe_no_fsync = cfg.unsafe_no_fsync
        contents: WalContents = self.wal.open(self.member_id, self.cluster_id)
        if contents.member_id and contents.member_id != self.member_id:
            # A restart is the WAL's member, whatever the --initial-* flags now say, as in
            # etcd: its peer URLs may have been changed with 'etcdctl member update' (and
            # the flags with them), or its URLs came from SRV records.
            log.info("restarting member %x from its WAL (the --initial-* flags name %x)",
                     contents.member_id, self.member_id)
            self.member_id = contents.member_id
        if contents.cluster_id and contents.cluster_id != self.cluster_id:
            self.cluster_id = contents.cluster_id  # joined an existing cluster earlier
        if contents.repaired_bytes:
            log.warning("WAL: repaired a torn tail (%d bytes of an unfinished write dropped)",
                        contents.repaired_bytes)
        map_size = max(cfg.quota_backend_bytes * 2, 1 << 30)
        self.backend = Backend(self.paths.db_path, map_size=map_size)
        self._open_state()
        if contents.snapshot_index > self.store.consistent_index:
            self._finish_snapshot_install(contents.snapshot_index, map_size)
        self._store_identity()
        self.metrics = MemberMetrics(self)
        self.wal.on_fsync = self.metrics.wal_fsync.observe
        applied = self.store.consistent_index
        verify.check_wal_covers(
            applied, contents.entries[-1][0] if contents.entries else contents.snapshot_index,
            self.paths.wal_dir, os.path.join(self.paths.db_path, DATA_FILE))
        self._last_snapshot = contents.snapshot_index
        fresh = not contents.entries and not contents.snapshot_index and not applied
        if cfg.force_new_cluster and not fresh:
            from kvcore.server import force_new_cluster
            ids = force_new_cluster.members_at_commit(contents, set(self.membership.members),
                                                      applied)
            force_new_cluster.rewrite(self.wal, contents, self.member_id, ids)
        bootstrap = None
        if fresh and cfg.initial_cluster_state == "new":
            bootstrap = bootstrap_entries(self.initial)
        # A restored data dir (kvcoreutl snapshot restore, an etcd dir taken over) holds
        # data no log entry carries: once the bootstrap entries are applied, a snapshot
        # releases them, so a member added later gets the data as a snapshot (etcd's
        # restore writes its WAL starting with one for the same reason).
        self._snapshot_after_bootstrap = (
            len(bootstrap) if bootstrap and self.store.current_rev > 1 else 0)
        self.transport = PeerTransport(
            self.member_id, self.cluster_id, step=lambda m: self.raft.step(m),
            unreachable=lambda pid: self.raft.report_unreachable(pid),
            snapshot_status=lambda pid, failed: self.raft.report_snapshot(pid, failed),
            snapshot_source=self.snapshot_copy, snapshot_dir=self.paths.snap_dir,
            members_info=self._members_info, is_removed=lambda i: i in self.membership.removed,
            on_removed=self._removed, tls=cfg.peer_tls)
        self.transport.set_members(self.membership.sorted() or self.initial)
        self.transport.metrics = self.metrics
        self.transport.lease_answer = self.services["lease"].answer_peer
        self._lease_forwarder = LeaseForwarder(self.transport.open_lease_lane)
        walstore = WalStore(self.wal, self.paths.snap_dir, contents, self.loop,
                            max_snapshots=cfg.max_snapshots, max_wals=cfg.max_wals)
        walstore.on_snap_saved = self.metrics.snap_saved
        self.raft = RaftDriver(
            self.member_id, walstore,
            election_tick=max(2, cfg.election_timeout // cfg.heartbeat_interval),
            heartbeat_ms=cfg.heartbeat_interval, apply=self._apply_ready,
            on_leader_change=self._leader_changed, send=self.transport.send, loop=self.loop,
            pre_vote=cfg.pre_vote, stage=self.stage_apply)
        self.raft.restore(applied, bootstrap)
        self.transport.on_peer_closed = self.raft.leader_connection_closed
        self.proposer = entry.Proposer(self.loop, self.member_id, int(time.time() * 1000),
                                       self.raft.wake)
        self.raft.proposer = self.proposer
        self.raft.read_state = self.read_state
        self.raft.start()
        self._leader_until = 0          # monotonic ns: renewals allowed before it
        self._confirming = None
        self._confirm_waiters: list = []
        self._confirm_leadership()
        self._timers = [self.loop.create_task(t()) for t in self.registry.timers]
        self._timers.append(self.loop.create_task(self.metrics.probe_peers()))
        log.info("member %x of cluster %x: revision %d, applied index %d, term %d",
                 self.member_id, self.cluster_id, self.store.current_rev, applied,
                 self.raft.term)
        # kvcore's cluster version is fixed; etcd says this when it sets or recovers
        # its own, and tools (etcd's e2e suite) wait for the line.
        log.info("enabled capabilities for version",
                 extra=logs.fields(cluster_version=ETCD_VERSION.rsplit(".", 1)[0]))

    def _finish_snapshot_install(self, index: int, map_size: int) -> None:
        """The WAL records a received snapshot at ``index`` that the backend does not
        hold yet (a crash between persisting it and installing its data): install
        the data received with it, kept in the snap dir until installed (etcd's
        recoverSnapshotBackend). Without it the member could never catch up."""
        path = os.path.join(self.paths.snap_dir, f"{index:016x}.snap.db")
        if not os.path.exists(path):
            raise verify.DataFileError(
                f"{self.paths.wal_dir}: the WAL holds a snapshot at index {index} but "
                f"{os.path.join(self.paths.db_path, DATA_FILE)} is at applied index "
                f"{self.store.consistent_index} and the snapshot's data {path} is "
                f"missing; {verify.RESTORE_HINT}")
        verify.check_lmdb(path)
        self.backend.close()
        backend_install(self.paths.db_path, path)
        self.backend = Backend(self.paths.db_path, map_size=map_size)
        self._open_state()
        log.info("finished installing snapshot at index %d after a restart: revision %d",
                 index, self.store.current_rev)

    def _store_identity(self) -> None:
        """Member and cluster IDs where workers' own read transactions find them."""
        with self.backend.begin_write() as txn:
            txn.put(META_MEMBER_ID, u64(self.member_id), db=self.backend.meta)
            txn.put(META_CLUSTER_ID, u64(self.cluster_id), db=self.backend.meta)

    def read_index_for_worker(self):
        """A worker's linearizable read: resolves with the applied index (u64) once
        it covers everything committed when the read arrived."""
        return self.linearizable(lambda: u64(self.applied_index))

    def _open_state(self) -> None:
        """Everything derived from the backend (again after a snapshot install)."""
        self.store = KVStore(self.backend)
        ticks = max(1, self.cfg.election_timeout // self.cfg.heartbeat_interval)
        min_ttl = -(-((3 * ticks) // 2) * self.cfg.heartbeat_interval // 1000)  # etcd's minTTL
        if getattr(self, "lessor", None) is not None:
            self.lessor.detach()   # its slots in the shared clock go with it
        self.lessor = Lessor(self.backend, max(1, min_ttl), clock_table=self.lease_clock)
        self.lessor.restore(self.store)
        self.membership = Membership(self.backend)
        self.alarms = Alarms(self.backend)
        with self.backend.begin_read() as txn:
            self.quota.used = used_bytes(self.backend, txn)
        self.auth.load(self.backend)
        self._auth_changed()
        if hasattr(self, "watch_hub"):
            self.watch_hub.store = self.store
        else:
            self.watch_hub = WatchHub(self.store, self.header, self.cfg.max_request_bytes)
        for fn in self.registry.on_state_opened:
            fn()

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

    async def snapshot_copy(self):
        """A consistent copy of the backend's data file to send to a follower, and the
        Raft snapshot metadata that matches it: (path, index, term, ConfState).

        Like etcd's merged snapshot message, the copy is taken now, so it describes
        the applied state now (with today's membership, which a member added since
        the last snapshot needs to accept it)."""
        d = os.path.join(self.paths.snap_dir, f"send-{time.time_ns()}")
        os.mkdir(d, storage.PRIVATE_DIR_MODE)

        def copy():
            meta = self.backend.copy_compacted(d)
            ci, term, cs = (meta[k] for k in (META_CONSISTENT_INDEX, META_TERM,
                                              META_CONF_STATE))
            return (from_u64(ci) if ci else 0, from_u64(term) if term else 0,
                    rcodec.decode_conf_state(cs)[0] if cs else None)

        t0 = time.perf_counter()
        index, term, cs = await self.loop.run_in_executor(None, copy)
        self.metrics.backend_snapshot.observe(time.perf_counter() - t0)
        # The caller sends and deletes the file; the empty directory goes with it.
        path = d + ".mdb"
        os.replace(os.path.join(d, "data.mdb"), path)
        os.rmdir(d)
        return path, index, term, cs

    async def close(self) -> None:
        if self.transport is not None:
            self._lease_forwarder.close()
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
            self.metrics.leader_changes += 1   # etcd counts each change to a known leader
        self._publish_header()
        if new:
            self.leader_wait.release()
        for fn in self.registry.on_leader_changed:
            fn(old, new)

    def _apply_ready(self, snapshot, entries: list) -> None:
        if snapshot is not None:
            self._install_snapshot(snapshot)
        if entries:
            started = time.monotonic()
            self._apply(entries)
            self._applied_bytes += sum(len(e.data) for e in entries)
            took, limit = time.monotonic() - started, self.cfg.experimental_warning_apply_duration
            if took > limit:   # etcd's --experimental-warning-apply-duration
                log.warning("apply request took too long", extra=logs.fields(
                    took=f"{took * 1000:.3f}ms", expected_duration=f"{limit * 1000:g}ms",
                    entries=len(entries)))
        self._publish_header()
        applied = self.raft.applied if not entries else entries[-1].index
        if self._snapshot_after_bootstrap and applied >= self._snapshot_after_bootstrap:
            self._snapshot_after_bootstrap = 0
            self._last_snapshot = applied
            self.loop.create_task(self.raft.snapshot(applied, self.backend.sync, 0))
        elif applied - self._last_snapshot >= self.cfg.snapshot_count or \
                self._applied_bytes >= SNAPSHOT_BYTES:
            self._last_snapshot, self._applied_bytes = applied, 0
            self.loop.create_task(self.raft.snapshot(
                applied, self.backend.sync, self.cfg.experimental_snapshot_catchup_entries))

    def _install_snapshot(self, snapshot) -> None:
        """Replace the backend with the leader's copy that came with the snapshot."""
        index = snapshot.metadata.index
        path = self.transport.received_snapshots.pop(index, None)
        if path is None:
            raise RuntimeError(f"the data of snapshot {index} was not received")
        map_size = self.backend.map_size
        if failpoints.ACTIVE is not None:
            failpoints.hit("snapshot-install")
        self.backend.close()
        backend_install(self.paths.db_path, path)
        # Its meta pages are checked; a page walk would stall the loop on a large file.
        self.backend = Backend(self.paths.db_path, map_size=map_size, check_pages=False)
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

    def stage_apply(self, entries: list) -> bool:
        """The driver's ``stage``: a lone plain put, applied into a write transaction
        left open while its WAL write is synced; ``_apply`` of the same entries then
        commits it and answers. Until that commit nothing of it is visible: the
        transaction is uncommitted (workers read committed LMDB state only), and the
        in-memory state it touched (revision index, lease attachments) is read only
        on this loop, which runs nothing else before the commit. A failed sync stops
        the process with the transaction uncommitted."""
        if len(entries) != 1 or (failpoints.ACTIVE is not None
                                 and not failpoints.only("apply-staged")):
            return False
        data = entries[0].data
        if len(data) < 9 or data[8] != entry.OP_PUT \
                or entries[0].index <= self.store.consistent_index:
            return False
        self._staged = self._apply_stage(entries)
        if failpoints.ACTIVE is not None:
            failpoints.hit("apply-staged")
        return True

    def _apply(self, entries: list) -> None:
        staged, self._staged = self._staged, None
        if staged is None:
            staged = self._apply_stage(entries)
        elif staged[1] is not entries:
            staged[0].abort()
            raise AssertionError("the staged apply is not of the entries applied")
        self._apply_commit(staged)

    def _apply_stage(self, entries: list) -> tuple:
        """Every change of ``entries`` in one write transaction, not committed ->
        (txn, entries, [(future, result)], whether a conf change was applied)."""
        results = []
        consistent = self.store.consistent_index
        conf_changed = False
        decode = entry.decode
        clock = time.perf_counter
        observe = self.metrics.observe_apply
        waiter = self.proposer.waiter
        decoded = self._decoded
        if failpoints.ACTIVE is not None:
            failpoints.hit("apply-before")
        txn = self.backend.open_write()
        try:
            for e in entries:
                if e.type == EntryConfChange:
                    self._apply_conf_change(txn, e, e.index <= consistent)
                    conf_changed = True
                    continue
                if e.index <= consistent or not e.data:
                    continue  # already in the backend (replay), or a leader's empty entry
                rid, op, req = decode(e.data)
                fut = waiter(rid)
                if fut is not None and decoded:
                    d = decoded.pop(fut, None)
                    # Proposed while auth was off and applied once it is on, the
                    # request is checked at apply from its bytes (services/auth.py).
                    if d is not None and not self.auth.enabled:
                        req = d
                self.auth.apply_index = e.index   # simple tokens name their entry
                t0 = clock()
                try:
                    res = self._apply_op(txn, op, req)
                except GrpcError as err:
                    res = err
                except DecodeError:   # never validated: every member refuses it alike
                    res = GrpcError(StatusCode.INTERNAL, UNPARSABLE)
                observe(op, req, not isinstance(res, GrpcError), clock() - t0)
                if fut is not None:
                    results.append((fut, res))
            last = entries[-1]
            if last.index > consistent:
                self.store.set_consistent_index(txn, last.index, last.term)
            self.quota.used = used_bytes(self.backend, txn)
        except BaseException:
            txn.abort()
            raise
        return txn, entries, results, conf_changed

    def _apply_commit(self, staged: tuple) -> None:
        """Commit a staged apply, then tell watchers and answer the proposers."""
        txn, entries, results, conf_changed = staged
        clock = time.perf_counter
        commit_start = clock()
        self.backend.commit_write(txn)
        self.metrics.observe_commit(clock() - commit_start)
        if failpoints.ACTIVE is not None:
            failpoints.hit("apply-after")
        self.auth_api.applied(entries[-1].index)
        changes, self._changes = self._changes, []
        hub = self.watch_hub
        if changes and (hub.by_key or hub.ranges):   # no read transaction for no watcher
            with self.backend.begin_read() as rtxn:
                for rev, cs in changes:
                    hub.notify(rtxn, rev, cs)
        if hub.unsynced:
            self.schedule_catch_up()
        self.answers.resolve(results)
        if conf_changed:
            self._conf_changed()

    def _apply_op(self, txn, op: int, req: bytes) -> bytes:
        """One committed proposal through its service's applier (services/registry.py)."""
        a = self._appliers.get(op)
        if a is None:
            raise GrpcError(StatusCode.INTERNAL, f"unknown proposal type {op}")
        if self.alarms.active:
            if a.capped is not None and self.alarms.nospace and a.capped(req):
                raise etcd_error(EtcdError.NO_SPACE)   # etcd's capped applier
            if op in CORRUPT_REFUSED and self.alarms.corrupt:
                raise etcd_error(EtcdError.CORRUPT)    # etcd's corrupt applier
        w = self.store.write(txn)
        rev, body = a.fn(txn, w, req)
        w.end()
        if w.changes:
            self.lessor.on_changes(w.changes)
            self._changes.append((w.begin_rev + 1, w.changes))
        return wire.with_header(self.header(rev), body)

    def _apply_conf_change(self, txn, e, replayed: bool) -> None:
        cc = rcodec.decode_conf_change(e.data)
        self.raft.stop_local_reads()   # re-decided once this apply is done
        self.raft.apply_conf_change(e.index, cc)
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
        # The caller of propose_conf_change (the cluster service) waits for this.
        waiter = self._conf_waiters.pop(e.data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(e.index)

    def _conf_changed(self) -> None:
        self.transport.set_members(self.membership.sorted())
        if self.member_id in self.membership.removed:
            self._removed()
        cs = self.raft.conf_state
        if cs.voters == [self.member_id] and not cs.learners and not self.raft.lead:
            self.raft.campaign_soon()

    # ---- the server context (kvcore/services/context.py) ----

    def header(self, rev: int) -> bytes:
        return self._headers.get(self.cluster_id, self.member_id, rev, self.raft.term)

    # ---- the leader's confirmed leadership (lease renewals) ----

    def _confirm_leadership(self) -> None:
        """Every heartbeat interval while this member leads: a ReadIndex round, whose
        heartbeat a quorum acknowledged, proves that no other leader can be elected
        before the round's start plus an election timeout (the members that answered
        reset their election timers after that start). Renewals are answered only
        within half that window (etcd 3.5.8+ checks leadership before each renewal,
        ensureLeadership; 3.5.1 does not, and a stale leader can renew a lease that
        its successor revokes). The window is also the workers' hold on the shared
        lease clock, so a core that stalls stops their renewals too."""
        if self.stopped.done():
            return
        self.loop.call_later(self.cfg.heartbeat_interval / 1000, self._confirm_leadership)
        if not self.raft.is_leader:
            self._leader_until = 0
            if self.lease_clock is not None:
                self.lease_clock.hold(0)
            self._confirmed(False)
            return
        if self._confirming is not None and not self._confirming.done():
            return
        start = time.monotonic_ns()
        fut = self._confirming = self.raft.confirm_leadership()
        window = self.cfg.election_timeout * 500_000        # half of it, in ns

        def done(f):
            ok = not f.cancelled() and f.exception() is None and self.raft.is_leader
            if ok and start + window > self._leader_until:
                self._leader_until = start + window
                if self.lease_clock is not None:
                    self.lease_clock.hold(self._leader_until)
            self._confirmed(ok)
        fut.add_done_callback(done)
        # a round that never completes (leadership lost meanwhile) must not block the next
        def give_up():
            if not fut.done():
                fut.cancel()
                self.raft.forget_confirm(fut)
        self.loop.call_later(self.cfg.election_timeout / 1000, give_up)

    def leader_confirmed(self) -> bool:
        """This member leads, and a quorum said so within the renewal window."""
        return time.monotonic_ns() < self._leader_until

    def confirm_leadership(self):
        """A future: True once the next leadership round succeeds, False if it fails
        (or this member does not lead)."""
        fut = self.loop.create_future()
        self._confirm_waiters.append(fut)
        return fut

    def _confirmed(self, ok: bool) -> None:
        waiters, self._confirm_waiters = self._confirm_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(ok)

    def _publish_header(self) -> None:
        """What header(current revision) says, for the keep-alives workers answer."""
        if self.lease_clock is not None:
            self.lease_clock.publish(self.cluster_id, self.member_id,
                                     self.store.current_rev, self.raft.term)

    def _proposal_expired(self, fut) -> None:
        self._proposal_failed()
        _expire(fut)

    def _proposal_failed(self) -> None:
        self.metrics.proposals_failed += 1

    def _read_expired(self, fut) -> None:
        self.metrics.slow_read_indexes += 1
        self.metrics.read_indexes_failed += 1
        _expire(fut)

    def peer_active_since(self, pid: int):
        return self.transport.contact.since(pid)

    @property
    def request_timeout(self) -> float:
        """etcd's: 5 s plus two election timeouts."""
        return 5.0 + 2 * self.cfg.election_timeout / 1000.0

    def propose(self, op: int, req: bytes, decoded=None):
        """``decoded``: the request as the caller already decoded it from ``req``;
        this member's apply then uses it instead of decoding the entry again (the
        op's applier takes either)."""
        if len(req) > self.cfg.max_request_bytes:
            raise etcd_error(EtcdError.REQUEST_TOO_LARGE)
        if not self.raft.lead:   # waits for one, as in etcd (kvcore/server/leaderless.py)
            return self.leader_wait.add(op, req, decoded)
        return self._propose_now(op, req, decoded)

    def _propose_now(self, op: int, req: bytes, decoded=None):
        if self.raft.committed > self.raft.applied + MAX_APPLY_GAP:
            raise etcd_error(EtcdError.TOO_MANY_REQUESTS)
        if self.auth.enabled:   # a checked request carries its caller to apply
            op, req = self.auth_api.stamp(op, req)
            decoded = None      # the entry is the stamped op's, not the request's
        fut = self.proposer.propose(op, req)
        self.deadlines.add(fut)
        if decoded is not None:
            self._decoded[fut] = decoded
            fut.add_done_callback(self._forget_decoded)
        return fut

    def _forget_decoded(self, fut) -> None:
        self._decoded.pop(fut, None)   # expired or failed before its apply

    def lease_to_leader(self, leader_id: int, kind: int, request: bytes, timeout: float):
        """A follower's lease request, answered by the leader (peer_lease.py)."""
        return self._lease_forwarder.call(leader_id, kind, request, timeout)

    def propose_internal(self, op: int, req: bytes):
        if self.auth.enabled:   # the member's own (lease expiry): etcd proposes it as root
            op, req = self.auth_api.stamp_trusted(op, req)
        return self.proposer.propose(op, req)

    def propose_conf_change(self, cc):
        if not self.raft.lead:
            raise etcd_error(EtcdError.NO_LEADER)
        data = rcodec.encode_conf_change(cc)
        applied = self._conf_waiters[data] = self.loop.create_future()
        self.raft.propose_conf_change(cc)
        self.loop.call_later(self.request_timeout, _expire_conf, applied,
                             self._conf_waiters, data)
        return applied

    def linearizable(self, fn):
        """Run ``fn`` once this member has applied everything committed when the
        read arrived (ReadIndex, batched per loop turn by the raft driver)."""
        out = self.loop.create_future()

        def ready(f):
            if out.done():
                return
            exc = f.exception()
            if exc is not None:
                self.metrics.read_indexes_failed += 1
                out.set_exception(exc)
                return
            try:
                out.set_result(fn())
            except Exception as e:
                out.set_exception(e)

        self.raft.read_index().add_done_callback(ready)
        self.read_deadlines.add(out)
        return out

    def read(self, fn):
        with self.backend.begin_read() as txn:
            return fn(ReadView(self.store, txn))

    async def defragment_backend(self) -> tuple[int, int]:
        """etcd's Defragment: a compacting copy of the backend swapped in; then the
        workers reopen the new file. -> (size before, size after).

        Applies wait meanwhile (writes and linearizable reads wait for it, as in
        etcd), but the copy runs on another thread, so Raft goes on: a leader keeps
        heartbeating and keeps its leadership through a long copy, as etcd's does
        (its raft loop runs beside the blocked apply). One at a time."""
        if self._defrag_lock is None:
            self._defrag_lock = asyncio.Lock()
        async with self._defrag_lock:
            before = self.backend.size()
            self.raft.hold_applies()
            try:
                tmp = await asyncio.to_thread(self._defrag_copy)
                self.backend.defrag_swap(tmp)
            finally:
                self.raft.release_applies()
            for conn in list(self.connections):
                conn.send(0, 0, fr.RELOAD, b"")
            with self.backend.begin_read() as txn:
                self.quota.used = used_bytes(self.backend, txn)
            return before, self.backend.size()

    def _defrag_copy(self) -> str:
        if failpoints.ACTIVE is not None:
            failpoints.hit("defrag-before")
        return self.backend.defrag_copy()

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

    # ---- auth (kvcore/auth/store.py, services/auth.py) ----

    def _auth_changed(self) -> None:
        """Workers serve Range locally only while auth is off (reads.py)."""
        self.read_state.set_auth(self.auth.enabled)

    async def http_probe(self, payload: bytes) -> bytes:
        """A worker's /metrics, /health, /livez or /readyz (kvcore/metrics/listener.py)."""
        method, target = probes.unpack_request(payload)
        return probes.pack_response(*await probes.route(
            self, method, target, self.cfg.metrics == "extensive"))


def _expire(fut) -> None:
    if not fut.done():
        fut.set_exception(etcd_error(EtcdError.TIMEOUT))


def _expire_conf(fut, waiters, data) -> None:
    waiters.pop(data, None)
    _expire(fut)
