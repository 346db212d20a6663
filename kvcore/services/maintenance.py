"""The Maintenance service: Status, Alarm, Hash, HashKV, Defragment, Snapshot
(MoveLeader is the cluster service's). Alarms change through the log (OP_ALARM).
Snapshot and Hash see the backend as etcd 3.5's bbolt schema (kvcore/snapshot/)."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time

from kvcore import ETCD_VERSION
from kvcore.api import rpc_pb2, wire
from kvcore.engine.base import GrpcError, StatusCode
from kvcore.mvcc.store import CompactedError, FutureRevError
from kvcore.mvcc.kvops import mvcc_error
from kvcore.server.alarms import alarm_body
from kvcore.server.entry import OP_ALARM
from kvcore.snapshot import export

log = logging.getLogger("kvcore.core")

MAINT = "/etcdserverpb.Maintenance/"


def without_header(msg) -> bytes:
    """A response message's bytes with field 1 (header) unset."""
    msg.ClearField("header")
    return msg.SerializeToString()


def _minor_version(v: str):
    """etcd's convertToClusterVersion: a semver, or Major.Minor -> (major, minor)."""
    import re
    m = re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)(\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?"
                     r"(\+[0-9A-Za-z.-]+)?)?", v)
    return (int(m.group(1)), int(m.group(2))) if m else None


class MaintenanceService:
    def __init__(self, ctx):
        self.ctx = ctx

    def register(self, reg) -> None:
        reg.unary_handler(MAINT + "Status", self.status)
        reg.unary_handler(MAINT + "Alarm", self.alarm)
        reg.unary_handler(MAINT + "Hash", self.hash)
        reg.unary_handler(MAINT + "HashKV", self.hash_kv)
        reg.unary_handler(MAINT + "Defragment", self.defragment)
        reg.unary_handler(MAINT + "Downgrade", self.downgrade)
        reg.stream(MAINT + "Snapshot", lambda out: SnapshotStream(self.ctx, out))
        reg.applier(OP_ALARM, self.apply_alarm)

    def _respond(self, msg) -> bytes:
        return wire.with_header(self.ctx.header(self.ctx.store.current_rev),
                                without_header(msg))

    def downgrade(self, req: bytes):
        """etcd 3.5's Downgrade: VALIDATE checks the target (one minor version below
        the cluster's); no downgrade job is ever running here, so CANCEL says so
        and ENABLE (which would start one) is not supported."""
        r = rpc_pb2.DowngradeRequest.FromString(req)
        if r.action == rpc_pb2.DowngradeRequest.CANCEL:
            raise GrpcError(StatusCode.FAILED_PRECONDITION,
                            "etcdserver: no inflight downgrade job")
        target = _minor_version(r.version)
        if target is None:
            raise GrpcError(StatusCode.INVALID_ARGUMENT,
                            "etcdserver: wrong downgrade target version format")
        major, minor = (int(x) for x in ETCD_VERSION.split(".")[:2])
        if target != (major, minor - 1):
            raise GrpcError(StatusCode.INVALID_ARGUMENT,
                            "etcdserver: invalid downgrade target version")
        if r.action == rpc_pb2.DowngradeRequest.ENABLE:
            raise GrpcError(StatusCode.UNIMPLEMENTED, "etcdserver: downgrade is not supported")
        return self._respond(rpc_pb2.DowngradeResponse(version=f"{major}.{minor}.0"))

    def status(self, req: bytes):
        ctx = self.ctx
        raft = ctx.raft
        me = ctx.membership.members.get(ctx.member_id)
        resp = rpc_pb2.StatusResponse(
            version=ETCD_VERSION, dbSize=ctx.backend.size(), leader=raft.lead,
            raftIndex=raft.committed, raftTerm=raft.term,
            raftAppliedIndex=ctx.applied_index, dbSizeInUse=ctx.backend.size_in_use(),
            isLearner=bool(me and me.is_learner))
        if not raft.lead:
            resp.errors.append("etcdserver: no leader")
        resp.errors.extend(ctx.alarms.describe())
        return self._respond(resp)

    def alarm(self, req: bytes):
        ctx = self.ctx
        r = rpc_pb2.AlarmRequest.FromString(req)
        if r.action == rpc_pb2.AlarmRequest.GET:
            return wire.with_header(ctx.header(ctx.store.current_rev),
                                    alarm_body(ctx.alarms.list(r.alarm)))
        return ctx.propose(OP_ALARM, req)

    def apply_alarm(self, txn, w, req: bytes):
        alarms = self.ctx.alarms
        r = rpc_pb2.AlarmRequest.FromString(req)
        changed = []
        if r.action == rpc_pb2.AlarmRequest.ACTIVATE and r.alarm != rpc_pb2.NONE:
            if alarms.activate(txn, r.memberID, r.alarm):
                changed.append((r.memberID, r.alarm))
                log.warning("alarm raised: memberID:%x alarm:%s", r.memberID,
                            rpc_pb2.AlarmType.Name(r.alarm))
        elif r.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            if alarms.deactivate(txn, r.memberID, r.alarm):
                changed.append((r.memberID, r.alarm))
                log.info("alarm disarmed: memberID:%x alarm:%s", r.memberID,
                         rpc_pb2.AlarmType.Name(r.alarm))
        return self.ctx.store.current_rev, alarm_body(changed)

    def hash(self, req: bytes):
        """etcd hashes its whole backend (store.Hash): the same over the exported schema."""
        ctx = self.ctx
        rev = ctx.store.current_rev
        t0 = time.perf_counter()
        h = ctx.read(lambda view: export.backend_hash(ctx.backend, view.txn))
        ctx.metrics.hash.observe(time.perf_counter() - t0)
        return wire.with_header(ctx.header(rev), without_header(rpc_pb2.HashResponse(hash=h)))

    def hash_kv(self, req: bytes):
        ctx = self.ctx
        r = rpc_pb2.HashKVRequest.FromString(req)
        t0 = time.perf_counter()
        try:
            h, compact_rev, hash_rev = ctx.read(
                lambda view: ctx.store.hash_kv(view.txn, r.revision))
        except (CompactedError, FutureRevError) as e:
            raise mvcc_error(e)
        ctx.metrics.hash_rev.observe(time.perf_counter() - t0)
        return self._respond(rpc_pb2.HashKVResponse(
            hash=h, compact_revision=compact_rev, hash_revision=hash_rev))

    def defragment(self, req: bytes):
        return asyncio.ensure_future(self._defragment())

    async def _defragment(self) -> bytes:
        t0 = time.perf_counter()
        before, after = await self.ctx.defragment_backend()
        self.ctx.metrics.defrag.observe(time.perf_counter() - t0)
        log.info("defragmented the backend: %d -> %d bytes", before, after)
        return b""   # etcd 3.5 answers an empty DefragmentResponse (no header)


class SnapshotStream:
    """Maintenance.Snapshot: the backend exported as etcd's bbolt file (one read
    transaction: a consistent state), streamed in chunks within the stream's
    flow-control window, followed as in etcd by the SHA-256 of everything before it
    ('etcdctl snapshot save' and 'etcdutl snapshot restore' check it)."""

    CHUNK = 32 * 1024
    keep_after_half_close = True

    def __init__(self, ctx, out):
        self.ctx = ctx
        self.out = out
        self.task = None
        self._room = None

    def on_message(self, payload: bytes) -> None:
        if self.task is None:
            self.out.on_credit = self._credit
            self.task = self.ctx.loop.create_task(self._run())

    def _credit(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    async def _run(self) -> None:
        ctx = self.ctx
        path = None
        try:
            path = await ctx.loop.run_in_executor(None, export.write_file, ctx.backend,
                                                  os.path.dirname(ctx.backend.path))
            size = os.path.getsize(path)
            sha = hashlib.sha256()
            sent = 0
            with open(path, "rb") as f:
                while sent < size:
                    chunk = f.read(self.CHUNK)
                    if not chunk:
                        raise OSError(f"snapshot file ended at {sent} of {size} bytes")
                    sha.update(chunk)
                    sent += len(chunk)
                    if not await self._send(size - sent, chunk):
                        return
            if not await self._send(0, sha.digest()):
                return
            self.out.end()
        except Exception as e:
            log.warning("snapshot stream failed: %s", e)
            self.out.end(StatusCode.INTERNAL, str(e))
        finally:
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def _send(self, remaining: int, blob: bytes) -> bool:
        """One message once the window has room (False: the stream is gone). As etcd
        3.5.1's: no header, no version; remaining_bytes counts the file only, so the
        last chunk of the file and the SHA-256 after it both say 0."""
        while not self.out.can_send():
            if self.out.closed:
                return False
            self._room = self.ctx.loop.create_future()
            await self._room
        self.out.send(rpc_pb2.SnapshotResponse(remaining_bytes=remaining,
                                               blob=blob).SerializeToString())
        return True

    def on_close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def register(ctx, reg) -> MaintenanceService:
    s = MaintenanceService(ctx)
    s.register(reg)
    return s
