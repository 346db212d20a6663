"""The peer transport: Raft messages between members over TCP (--listen-peer-urls).

Each member keeps, to each peer, two long-lived outbound connections ("lanes"):
appends (MsgApp, possibly large) on one, everything else (heartbeats, votes,
responses) on the other, so a heartbeat never waits behind a big append. Frames
queued during one event-loop turn go out in one write. A lane that cannot connect
retries with backoff and tells Raft the peer is unreachable; a full queue drops
messages (Raft retransmits). Snapshots (MsgSnap plus the LMDB file) go on a
connection of their own, streamed in chunks.

Every connection opens with a handshake naming the cluster and both members; the
receiver refuses a foreign cluster, a message meant for another member, or one from
a member that was removed, with a reason the sender logs.

A peer URL with https runs every connection to or from it over TLS (etcd's
--peer-* flags, kvcore/tls.py): the listener finishes the TLS handshake (and, with
client certificates, etcd's SAN check against the remote address) before the
kvcore handshake; a lane dials an https peer with the member's peer certificate.
Both ends log a failed TLS handshake, so mismatched configurations show up as a
log line on each side rather than a silent retry loop.

A connection that opens with an HTTP request instead of the handshake (curl, scripts
asking etcd's /version or /members on the peer URL) gets etcd's answers from
kvcore/server/peer_http.py.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import ssl
import struct
import time
from typing import Callable, Optional
from urllib.parse import urlparse

from kvcore.raft.codec import decode_message, encode_message
from kvcore.server import peer_http, peer_lease
from kvcore.server.peer_contact import PeerContact
from kvcore.raft.types import MsgApp, MsgHeartbeat, MsgSnap, Snapshot, SnapshotMetadata
from kvcore.tls import TLSInfo, TLSListener, check_cert_san, listen_socket
from kvcore.tls import reason as tls_reason

log = logging.getLogger("kvcore.peer")

MAGIC = b"KVPEER1\n"
_HELLO = struct.Struct("<QQQB")      # cluster id, from, to, lane
_LEN = struct.Struct("<I")
_U64 = struct.Struct("<Q")
LANE_MSG, LANE_APP, LANE_SNAP, LANE_MEMBERS, LANE_HASHKV, LANE_LEASE = 0, 1, 2, 3, 4, 5
OK, ERR_CLUSTER, ERR_MEMBER, ERR_REMOVED = 0, 1, 2, 3
_REASONS = {ERR_CLUSTER: "cluster ID mismatch", ERR_MEMBER: "member ID mismatch",
            ERR_REMOVED: "the member has been permanently removed from the cluster"}
QUEUE_LIMIT = {LANE_MSG: 4096, LANE_APP: 4096}
CHUNK = 1 << 20
WRITE_TIMEOUT = 5.0   # seconds a lane may wait for the peer to read (etcd: ConnWriteTimeout)


def _addr(url: str) -> tuple[str, int]:
    u = urlparse(url)
    return u.hostname, u.port


class _Dialer:
    """Opens connections to peer URLs: TCP for http, TLS for https (verifying the
    peer's certificate against the host in its URL, unless auto TLS made ours)."""

    def __init__(self, tls: Optional[TLSInfo]):
        self.tls = tls or TLSInfo()
        self._ctx = None

    def context(self):
        if self._ctx is None:
            self._ctx = self.tls.client_context()
        return self._ctx

    async def open(self, url: str, timeout: float):
        host, port = _addr(url)
        if urlparse(url).scheme != "https":
            return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        ctx = self.context()
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=ctx, server_hostname=host if ctx.check_hostname else "",
            ssl_handshake_timeout=timeout), timeout)


def _describe(e: BaseException, url: str) -> str:
    """What a failed connection attempt says in the log."""
    if isinstance(e, ssl.SSLError):
        return f"TLS handshake with {url} failed: {tls_reason(e)}"
    if isinstance(e, asyncio.IncompleteReadError) and urlparse(url).scheme == "https":
        return (f"{url} closed the connection after the TLS handshake (it refused our "
                "certificate?)")
    if isinstance(e, asyncio.IncompleteReadError):
        return (f"{url} closed the connection during the handshake (is it an https peer "
                "URL, or not a kvcore member?)")
    if isinstance(e, ConnectionResetError) and urlparse(url).scheme == "https":
        return f"TLS handshake with {url} failed: connection reset (is it a plain http peer?)"
    return ""


class _Lane:
    """One outbound connection to a peer, with its queue and reconnect loop."""

    def __init__(self, transport: "PeerTransport", peer_id: int, lane: int):
        self.t = transport
        self.peer_id = peer_id
        self.lane = lane
        self.queue: collections.deque = collections.deque()
        self.writer: Optional[asyncio.StreamWriter] = None
        self.wake = asyncio.Event()
        self.task = asyncio.get_event_loop().create_task(self._run())
        self.logged_error = None

    def push(self, frame: bytes) -> bool:
        """Queue a frame; ``flush`` (or the lane's task) writes it."""
        if len(self.queue) >= QUEUE_LIMIT[self.lane]:
            return False
        self.queue.append(frame)
        return True

    def flush(self) -> None:
        """Write what is queued now if the connection is up and keeping up (no bytes
        waiting in the transport): one write per lane per Raft Ready, without a wake-up
        of the lane's task. Otherwise (connecting, or a peer slow to read) the task
        writes it, draining with the write timeout."""
        w = self.writer
        if (w is not None and self.queue and not w.transport.is_closing()
                and not w.transport.get_write_buffer_size()):
            frames = list(self.queue)
            self.queue.clear()
            w.writelines(frames)
            if self.t.metrics is not None:
                self.t.metrics.peer_sent_bytes(self.peer_id, sum(map(len, frames)))
            if not w.transport.get_write_buffer_size():
                return
        self.wake.set()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            url = self.t.peer_url(self.peer_id)
            if url is None:
                return
            try:
                reader, writer = await self.t.dialer.open(url, 2.0)
                writer.write(MAGIC + _HELLO.pack(self.t.cluster_id, self.t.member_id,
                                                 self.peer_id, self.lane))
                status = (await asyncio.wait_for(reader.readexactly(1), timeout=2.0))[0]
                if status != OK:
                    reason = _REASONS.get(status, f"error {status}")
                    if self.logged_error != reason:
                        log.error("peer %x rejected the connection: %s", self.peer_id, reason)
                        self.logged_error = reason
                    writer.close()
                    if status == ERR_REMOVED:
                        self.t.on_removed()
                    raise ConnectionError(reason)
                self.logged_error = None
                self.t.dial_errors.pop(self.peer_id, None)
                backoff = 0.05
                self.writer = writer
                self.t.contact.opened(self.peer_id)
                closed = asyncio.get_event_loop().create_task(reader.read(1))
                while not closed.done():
                    if not self.queue:
                        if writer.transport.get_write_buffer_size():
                            # flush() wrote and the peer is not keeping up
                            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                            continue
                        self.wake.clear()
                        waiter = asyncio.ensure_future(self.wake.wait())
                        await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
                        waiter.cancel()
                        continue
                    frames = list(self.queue)
                    self.queue.clear()
                    writer.writelines(frames)
                    if self.t.metrics is not None:
                        self.t.metrics.peer_sent_bytes(self.peer_id, sum(map(len, frames)))
                    if writer.transport.get_write_buffer_size():
                        # etcd's ConnWriteTimeout: a peer (or a path) that stops reading
                        # is dropped and dialed again, not waited on for ever while the
                        # heartbeats queue behind it.
                        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                    else:
                        await writer.drain()
                raise ConnectionError("closed by peer")
            except asyncio.CancelledError:
                if self.writer is not None:
                    self.writer.close()
                    self.t.contact.closed(self.peer_id)
                raise
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                    ConnectionError) as e:
                self.t.dial_failed(self.peer_id, _describe(e, url))
                if self.writer is not None:
                    self.t.contact.closed(self.peer_id)
                self.writer = None
                if self.queue:
                    self.queue.clear()
                self.t.unreachable(self.peer_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def close(self) -> None:
        self.task.cancel()


class PeerTransport:
    def __init__(self, member_id: int, cluster_id: int, *, step: Callable,
                 unreachable: Callable, snapshot_status: Callable,
                 snapshot_source: Callable, snapshot_dir: str, members_info: Callable,
                 is_removed: Callable, on_removed: Callable, tls: Optional[TLSInfo] = None):
        self.member_id = member_id
        self.tls = tls
        self.dialer = _Dialer(tls)
        self._last_rejection: dict = {}   # remote host -> last rejection logged
        self.dial_errors: dict = {}       # peer id -> last connection failure logged
        self.cluster_id = cluster_id
        self._step = step
        self._unreachable = unreachable
        self._snapshot_status = snapshot_status
        self._snapshot_source = snapshot_source   # async () -> path of a db copy
        self.snapshot_dir = snapshot_dir
        self._members_info = members_info          # () -> dict for LANE_MEMBERS
        self._is_removed = is_removed
        self.on_removed = on_removed
        self.urls: dict[int, list] = {}
        self.lanes: dict[tuple[int, int], _Lane] = {}
        self.servers: list = []
        self.received_snapshots: dict[int, str] = {}   # snapshot index -> db file
        self._unreach_reported: set = set()
        # (revision) -> dict: this member's HashKV for a peer's corruption check
        # (kvcore/server/corruption.py, etcd's /members/hashkv); None answers an error.
        self.hash_kv: Optional[Callable[[int], dict]] = None
        # (kind, request) -> (status, bytes): the leader's answer to a follower's lease
        # request (kvcore/server/peer_lease.py, etcd's /leases); None: NOT_LEADER.
        self.lease_answer: Optional[Callable[[int, bytes], tuple]] = None
        self.metrics = None   # kvcore/metrics/member.MemberMetrics: peer bytes, heartbeats
        self.contact = PeerContact()   # how long each peer has been reachable
        self.on_peer_closed: Optional[Callable[[int], None]] = None   # (peer id)
        # etcd's HTTP endpoints (/version, /members, ...) for a request on the port
        self.http = peer_http.PeerHTTP(members_info, lambda: self.hash_kv)

    def active_peers(self) -> set:
        """Peers this member has a live connection to (etcd_network_active_peers)."""
        return {pid for (pid, _lane), lane in self.lanes.items() if lane.writer is not None}

    async def round_trip(self, pid: int, timeout: float = 5.0) -> Optional[float]:
        """Seconds from a request to its answer on a fresh connection to the peer
        (the members look-up lane), or None if it cannot be reached."""
        url = self.peer_url(pid)
        if url is None:
            return None
        writer = None
        try:
            reader, writer = await self.dialer.open(url, timeout)
            loop = asyncio.get_event_loop()
            t0 = loop.time()
            writer.write(MAGIC + _HELLO.pack(0, 0, 0, LANE_MEMBERS))
            await asyncio.wait_for(reader.readexactly(1), timeout)
            self.contact.answered(pid)
            return loop.time() - t0
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            self.contact.unanswered(pid)
            return None
        finally:
            if writer is not None:
                writer.close()

    async def open_lease_lane(self, pid: int, timeout: float = 2.0):
        """(reader, writer) of a new lease connection to peer ``pid``, its handshake
        accepted (kvcore/server/peer_lease.py)."""
        url = self.peer_url(pid)
        if url is None:
            raise ConnectionError(f"no peer URL for member {pid:x}")
        reader, writer = await self.dialer.open(url, timeout)
        writer.write(MAGIC + _HELLO.pack(self.cluster_id, self.member_id, pid, LANE_LEASE))
        try:
            status = (await asyncio.wait_for(reader.readexactly(1), timeout))[0]
        except BaseException:
            writer.close()
            raise
        if status != OK:
            writer.close()
            raise ConnectionError(_REASONS.get(status, f"error {status}"))
        return reader, writer

    # ---- membership ----

    def set_members(self, members) -> None:
        self.urls = {m.id: list(m.peer_urls) for m in members if m.id != self.member_id}
        for key in list(self.lanes):
            if key[0] not in self.urls:
                self.lanes.pop(key).close()

    def peer_url(self, pid: int) -> Optional[str]:
        urls = self.urls.get(pid)
        return urls[0] if urls else None

    def unreachable(self, pid: int) -> None:
        self._unreachable(pid)

    def dial_failed(self, pid: int, reason: str) -> None:
        """Log why a connection to a peer failed (TLS, wrong port...), once per peer
        and reason: both lanes and every retry would otherwise repeat it."""
        if reason and self.dial_errors.get(pid) != reason:
            self.dial_errors[pid] = reason
            log.error("cannot connect to peer %x: %s", pid, reason)

    # ---- sending ----

    def send(self, messages) -> None:
        touched = set()
        for m in messages:
            if m.to not in self.urls:
                continue
            if m.type == MsgSnap:
                asyncio.get_event_loop().create_task(self._send_snapshot(m))
                continue
            lane_id = LANE_APP if m.type == MsgApp else LANE_MSG
            lane = self.lanes.get((m.to, lane_id))
            if lane is None:
                lane = self.lanes[(m.to, lane_id)] = _Lane(self, m.to, lane_id)
            body = encode_message(m)
            if lane.push(_LEN.pack(len(body)) + body):
                touched.add(lane)
            else:
                self._unreachable(m.to)
                if m.type == MsgHeartbeat and self.metrics is not None:
                    self.metrics.heartbeat_send_failures += 1
        for lane in touched:
            lane.flush()

    async def _send_snapshot(self, m) -> None:
        ok = False
        path = None
        try:
            path, index, term, cs = await self._snapshot_source()
            md = m.snapshot.metadata
            if cs is not None and index >= md.index and term:
                # Describe what is actually sent (etcd's merged snapshot message).
                m.snapshot = Snapshot(b"", SnapshotMetadata(cs, index, term))
            size = os.path.getsize(path)
            url = self.peer_url(m.to)
            reader, writer = await self.dialer.open(url, 5.0)
            writer.write(MAGIC + _HELLO.pack(self.cluster_id, self.member_id, m.to, LANE_SNAP))
            if (await asyncio.wait_for(reader.readexactly(1), 5.0))[0] != OK:
                raise ConnectionError("snapshot refused")
            body = encode_message(m)
            writer.write(_LEN.pack(len(body)) + body + _U64.pack(size))
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    writer.write(chunk)
                    await writer.drain()
            ack = await asyncio.wait_for(reader.readexactly(1), 120.0)
            ok = ack == b"\x00"
            writer.close()
            log.info("sent snapshot at index %d (%d bytes) to %x", m.snapshot.metadata.index,
                     size, m.to)
        except Exception as e:
            log.warning("sending snapshot to %x failed: %s", m.to, e)
        finally:
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            self._snapshot_status(m.to, not ok)

    # ---- receiving ----

    async def listen(self, urls: list[str]) -> None:
        for url in urls:
            host, port = _addr(url)
            if urlparse(url).scheme == "https":
                srv = TLSListener(
                    listen_socket(host, port), self.tls.server_context(), self._stream_protocol,
                    on_reject=lambda addr, err: self._rejected(addr, f"TLS handshake failed: "
                                                                     f"{err}"))
                srv.start()
            else:
                srv = await asyncio.start_server(self._accept, host, port, reuse_address=True)
            self.servers.append(srv)

    def _stream_protocol(self) -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._accept)

    def _rejected(self, addr, why: str) -> None:
        """A peer connection refused before the kvcore handshake (TLS): a warning the
        first time for a host and reason, debug after (the dialler retries)."""
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        line = f"rejected a peer connection from {host}: {why}"
        if self._last_rejection.get(host) != why:
            self._last_rejection[host] = why
            log.warning(line)
        else:
            log.debug(line)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            if writer.get_extra_info("ssl_object") is not None and self.tls \
                    and not self.tls.skip_client_san_verify:
                cert = writer.get_extra_info("peercert")
                peer = writer.get_extra_info("peername")
                err = await check_cert_san(cert, peer[0]) if cert and peer else None
                if err:
                    self._rejected(peer, f"client certificate check failed: {err}")
                    return
            # The magic alone first: an HTTP request (curl, etcd's tools) may be
            # shorter than magic and hello together and would wait for the timeout.
            head = await asyncio.wait_for(reader.readexactly(len(MAGIC)), 10.0)
            if head != MAGIC:
                if peer_http.is_request(head):
                    await self.http.serve(reader, writer, head)
                elif head[0] == 0x16:
                    peer = writer.get_extra_info("peername")
                    self._rejected(peer, "a TLS client on a plain (http) peer URL")
                writer.close()
                return
            hello = await asyncio.wait_for(reader.readexactly(_HELLO.size), 10.0)
            cid, frm, to, lane = _HELLO.unpack(hello)
            if lane in (LANE_MEMBERS, LANE_HASHKV):
                if lane == LANE_MEMBERS:
                    info = self._members_info()
                else:
                    rev = _U64.unpack(await asyncio.wait_for(reader.readexactly(8), 10.0))[0]
                    info = self.hash_kv(rev) if self.hash_kv else {"error": "unsupported"}
                body = json.dumps(info).encode()
                writer.write(bytes([OK]) + _LEN.pack(len(body)) + body)
                await writer.drain()
                writer.close()
                return
            status = OK
            if cid != self.cluster_id:
                status = ERR_CLUSTER
                log.warning("rejected a peer connection from %x: cluster ID mismatch "
                            "(got %x, want %x)", frm, cid, self.cluster_id)
            elif to != self.member_id:
                status = ERR_MEMBER
            elif self._is_removed(frm):
                status = ERR_REMOVED
            writer.write(bytes([status]))
            if status != OK:
                await writer.drain()
                writer.close()
                return
            if lane == LANE_SNAP:
                await self._receive_snapshot(reader, writer)
                return
            if lane == LANE_LEASE:
                await peer_lease.serve(reader, writer, self.lease_answer)
                return
            step = self._step
            metrics = self.metrics
            self.contact.opened(frm)
            try:
                while True:
                    n = _LEN.unpack(await reader.readexactly(4))[0]
                    step(decode_message(await reader.readexactly(n)))
                    if metrics is not None:
                        metrics.peer_received_bytes(frm, n + 4)
            except (asyncio.IncompleteReadError, ConnectionError):
                if self.on_peer_closed is not None:
                    self.on_peer_closed(frm)   # the peer closed it (or its process died)
                raise
            finally:
                self.contact.closed(frm)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down: end quietly (asyncio logs cancelled connection tasks)
        finally:
            writer.close()

    async def _receive_snapshot(self, reader, writer) -> None:
        n = _LEN.unpack(await reader.readexactly(4))[0]
        msg = decode_message(await reader.readexactly(n))
        size = _U64.unpack(await reader.readexactly(8))[0]
        index = msg.snapshot.metadata.index
        path = os.path.join(self.snapshot_dir, f"{index:016x}.snap.db")
        tmp = path + ".tmp"
        t0 = time.perf_counter()
        with open(tmp, "wb") as f:
            left = size
            while left:
                chunk = await reader.read(min(CHUNK, left))
                if not chunk:
                    raise ConnectionError("snapshot stream ended early")
                f.write(chunk)
                left -= len(chunk)
            f.flush()
            t1 = time.perf_counter()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        if self.metrics is not None:
            done = time.perf_counter()
            self.metrics.snap_db_fsync.observe(done - t1)
            self.metrics.snap_db_save.observe(done - t0)
            self.metrics.peer_received_bytes(msg.frm, n + 12 + size)
        self.received_snapshots[index] = path
        log.info("received snapshot at index %d (%d bytes) from %x", index, size, msg.frm)
        self._step(msg)
        writer.write(b"\x00")
        await writer.drain()

    async def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
        for srv in self.servers:
            srv.close()


async def fetch_members(urls: list[str], timeout: float = 5.0,
                        tls: Optional[TLSInfo] = None) -> Optional[dict]:
    """Ask any reachable peer for the cluster's members (to join an existing cluster)."""
    dialer = _Dialer(tls)
    for url in urls:
        try:
            reader, writer = await dialer.open(url, timeout)
            writer.write(MAGIC + _HELLO.pack(0, 0, 0, LANE_MEMBERS))
            if (await asyncio.wait_for(reader.readexactly(1), timeout))[0] != OK:
                continue
            n = _LEN.unpack(await reader.readexactly(4))[0]
            info = json.loads(await reader.readexactly(n))
            writer.close()
            return info
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            reason = _describe(e, url)
            if reason:
                log.error("cannot fetch the cluster's members: %s", reason)
            continue
    return None


async def fetch_hash_kv(url: str, revision: int, timeout: float = 5.0,
                        tls: Optional[TLSInfo] = None) -> dict:
    """A peer's HashKV at ``revision`` (its reply: hash, compact_revision,
    hash_revision, member_id, or error); raises OSError/TimeoutError if unreachable."""
    reader, writer = await _Dialer(tls).open(url, timeout)
    try:
        writer.write(MAGIC + _HELLO.pack(0, 0, 0, LANE_HASHKV) + _U64.pack(revision))
        if (await asyncio.wait_for(reader.readexactly(1), timeout))[0] != OK:
            raise OSError(f"{url} refused the hash request")
        n = _LEN.unpack(await asyncio.wait_for(reader.readexactly(4), timeout))[0]
        return json.loads(await asyncio.wait_for(reader.readexactly(n), timeout))
    except asyncio.IncompleteReadError as e:
        raise OSError(f"{url} closed the connection") from e
    finally:
        writer.close()
