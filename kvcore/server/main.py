"""``kvcore``: start one member.

The main process is the core (it owns all state); it starts N worker processes that
serve the client URLs, restarts any that die, and takes them down with it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time

import lmdb

from kvcore import discovery, heap, logs, tls
from kvcore.metrics.listener import start_listener as start_metrics_listener
from kvcore.server import config
from kvcore.ipc import framing
from kvcore.ipc.server import CoreConnection
from kvcore.loop import run_loop
from kvcore.server.core import Core
from kvcore.engine import client_listeners
from kvcore.server import corruption, leadership, sdnotify
from kvcore.storage import etcdlayout, takeover, verify
from kvcore.storage.wal import WalCorruptError

log = logging.getLogger("kvcore")


def _cors(value) -> list:
    """etcd's --cors: comma-separated origins, "*" (the default) for any."""
    if value is None:
        return ["*"]
    if isinstance(value, str):
        value = value.split(",")
    return [o.strip() for o in value if o.strip()]


class WorkerSupervisor:
    def __init__(self, cfg: config.Config, core, count: int, client_socks: dict):
        self.cfg = cfg
        self.core = core
        self.count = count
        self.client_socks = client_socks   # inherited by every worker
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._hello: dict[int, asyncio.Future] = {}
        self._started_at: dict[int, float] = {}

    def _args(self, fd: int) -> str:
        return json.dumps({
            "core_fd": fd, "listen": self.cfg.listen_client_urls,
            "listen_fds": client_listeners.to_args(self.client_socks),
            "engine": self.cfg.grpc_engine, "max_request_bytes": self.cfg.max_request_bytes,
            "max_txn_ops": self.cfg.max_txn_ops, "enable_ui": self.cfg.enable_ui,
            "max_concurrent_streams": self.cfg.max_concurrent_streams,
            "log_level": self.cfg.log_level, "log": logs.options(self.cfg),
            "keepalive": {"min_time": self.cfg.grpc_keepalive_min_time,
                          "interval": self.cfg.grpc_keepalive_interval,
                          "timeout": self.cfg.grpc_keepalive_timeout},
            "parent": os.getpid(),
            "db_path": self.core.paths.db_path, "read_state_fd": self.core.read_state.fd,
            "lease_clock_fd": (self.core.lease_clock.fd if self.core.lease_clock is not None
                               else -1),
            "db_map_size": self.core.backend.map_size,
            "tls": self.cfg.client_tls and self.cfg.client_tls.to_dict(),
            "cors": _cors(getattr(self.cfg, "cors", None)), "enable_v2": self.cfg.enable_v2,
            "enable_grpc_gateway": self.cfg.enable_grpc_gateway,
            "host_whitelist": list(self.cfg.host_whitelist or ()),
            "metrics": self.cfg.metrics, "election_ms": self.cfg.election_timeout})

    def on_hello(self, conn: CoreConnection) -> None:
        fut = self._hello.pop(conn.worker_pid, None)
        if fut and not fut.done():
            fut.set_result(None)

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        # Each worker gets one end of a fresh socketpair: no socket file, and the
        # connection dies with either process.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (ours, theirs):
            framing.size_buffers(end)
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: CoreConnection(self.core, self.on_hello), sock=ours)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kvcore.worker", self._args(theirs.fileno()),
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(theirs.fileno(), self.core.read_state.fd,
                      *((self.core.lease_clock.fd,) if self.core.lease_clock is not None else ()),
                      *(s.fileno() for s in self.client_socks.values())))
        theirs.close()
        self.procs[slot] = proc
        self._started_at[slot] = time.monotonic()
        return proc

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for slot in range(self.count):
            proc = await self._spawn(slot)
            hello = self._hello[proc.pid] = loop.create_future()
            died = loop.create_task(proc.wait())
            done, _ = await asyncio.wait({hello, died}, timeout=60,
                                         return_when=asyncio.FIRST_COMPLETED)
            if hello not in done:
                raise SystemExit(f"kvcore: worker {slot} failed to start serving "
                                 f"{', '.join(self.cfg.listen_client_urls)}")
            died.cancel()
            loop.create_task(self._watch(slot, proc))

    async def _watch(self, slot: int, proc) -> None:
        while True:
            code = await proc.wait()
            if self.stopping:
                return
            log.warning("worker %d (pid %d) exited with code %s; restarting", slot, proc.pid, code)
            if time.monotonic() - self._started_at[slot] < 1.0:
                await asyncio.sleep(1.0)  # do not spin on a worker that cannot start
            proc = await self._spawn(slot)

    async def stop(self) -> None:
        self.stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()


async def serve(cfg: config.Config) -> None:
    loop = asyncio.get_running_loop()
    try:
        cfg.client_tls = tls.client_info(cfg)
        cfg.peer_tls = tls.peer_info(cfg)
    except tls.TLSConfigError as e:
        raise SystemExit(f"kvcore: {e}")
    # Bound here, once; the workers accept on them (--socket-reuse-port: sharing the
    # port with other processes is wanted).
    # (grpcio cannot accept on an inherited socket: a front, native or its
    # pure-Python twin, accepts there and splices HTTP/2 to grpcio.)
    client_socks = client_listeners.bind(cfg.listen_client_urls, cfg.socket_reuse_port)
    from kvcore import ETCD_VERSION, __version__
    log.info("starting a kvcore server", extra=logs.fields(
        kvcore_version=__version__, etcd_version=ETCD_VERSION, name=cfg.name,
        data_dir=cfg.data_dir, wal_dir=cfg.wal_dir, snapshot_count=cfg.snapshot_count,
        heartbeat_interval=f"{cfg.heartbeat_interval}ms",
        election_timeout=f"{cfg.election_timeout}ms",
        initial_cluster=cfg.initial_cluster, initial_cluster_state=cfg.initial_cluster_state,
        initial_cluster_token=cfg.initial_cluster_token,
        listen_client_urls=cfg.listen_client_urls,
        advertise_client_urls=cfg.advertise_client_urls,
        listen_peer_urls=cfg.listen_peer_urls,
        initial_advertise_peer_urls=cfg.initial_advertise_peer_urls,
        quota_backend_bytes=cfg.quota_backend_bytes, pre_vote=cfg.pre_vote,
        auto_compaction_mode=cfg.auto_compaction_mode,
        auto_compaction_retention=cfg.auto_compaction_retention,
        discovery_url=cfg.discovery, discovery_proxy=cfg.discovery_proxy))
    takeover.resume(cfg.data_dir)
    found = etcdlayout.etcd_files(cfg.data_dir, cfg.wal_dir)
    if found and not cfg.wal_dir and takeover.one_member(cfg.initial_cluster) and \
            os.path.join(cfg.data_dir, "member", "snap", "db") in found:
        try:    # etcd's runbooks (restore, then start; a swapped binary) as they are
            takeover.take_over(cfg.data_dir, cfg.name, cfg.initial_cluster,
                               cfg.initial_cluster_token, cfg.initial_advertise_peer_urls)
        except (OSError, ValueError) as e:
            raise SystemExit(f"kvcore: cannot take over etcd's data dir {cfg.data_dir}: "
                             f"{e}")
        found = etcdlayout.etcd_files(cfg.data_dir, cfg.wal_dir)
    if found:
        raise SystemExit(etcdlayout.refusal(cfg.data_dir, found))
    core = Core(cfg)
    await core.discover()
    try:
        core.open()
    except WalCorruptError as e:
        raise SystemExit(f"kvcore: the write-ahead log is corrupt: {e}")
    except verify.DataFileError as e:
        raise SystemExit(f"kvcore: damaged data, refusing to start: {e}")
    except lmdb.Error as e:   # damage the checks before opening could not see
        raise SystemExit(f"kvcore: damaged data, refusing to start: "
                         f"{os.path.join(core.paths.db_path, 'data.mdb')}: {e}; "
                         f"{verify.RESTORE_HINT}")
    corruption.serve_peers(core)
    await core.start_peer()
    if cfg.experimental_initial_corrupt_check:
        try:
            await corruption.check_initial(core)
        except corruption.DataInconsistency as e:
            await core.close()
            logs.emit_now("warn", "failed to start kvcore", logger=cfg.logger, error=str(e))
            raise SystemExit(1)
    workers = cfg.workers or max(1, os.cpu_count() or 1)
    sup = WorkerSupervisor(cfg, core, workers, client_socks)
    stop = loop.create_future()
    compactor = checker = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    metrics_listener = start_metrics_listener(core, cfg)
    try:
        await sup.start()
        compactor = _start_compactor(cfg, core)
        checker = _start_corruption_check(cfg, core)
        if metrics_listener is not None:
            await metrics_listener.start()
        # Like etcd's ReadyNotify: serve once a leader is known (bounded, so a member
        # of a cluster that has not formed yet still comes up and says so).
        deadline = loop.time() + 3 * cfg.election_timeout / 1000.0 + 2
        while not core.raft.lead and loop.time() < deadline and not stop.done():
            await asyncio.sleep(0.01)
        if not core.raft.lead:
            log.warning("no leader yet; serving anyway (requests fail with 'etcdserver: no leader')")
        log.info("ready to serve client requests on %s (%d %s worker(s))",
                 ", ".join(cfg.listen_client_urls), workers, cfg.grpc_engine,
                 extra=logs.fields(local_member_id=f"{core.member_id:x}",
                                   cluster_id=f"{core.cluster_id:x}"))
        sdnotify.notify("READY=1")
        heap.freeze_startup_objects()
        done, _ = await asyncio.wait({stop, core.stopped}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down (%s)", "stop signal" if stop in done else core.stopped.result())
        if stop in done:    # etcd's Stop: a leader hands over before it goes
            await leadership.transfer_on_stop(core, core.request_timeout)
    finally:
        if compactor is not None:
            compactor.stop()
        if checker is not None:
            checker.cancel()
        if metrics_listener is not None:
            await metrics_listener.close()
        await sup.stop()
        for s in client_socks.values():
            s.close()
        await core.close()


def _start_compactor(cfg: config.Config, core: Core):
    """--auto-compaction-*: compacts through the member's own Compact (kvcore/server/
    compactor.py has the cadence)."""
    from kvcore.api import rpc_pb2
    from kvcore.server import compactor

    async def compact(rev: int) -> None:
        res = core.services["kv"].compact(
            rpc_pb2.CompactionRequest(revision=rev).SerializeToString())
        if asyncio.isfuture(res):
            await res

    c = compactor.from_config(cfg, rev=lambda: core.store.current_rev, compact=compact,
                              is_leader=lambda: core.raft.is_leader)
    return c and c.start()


def _start_corruption_check(cfg: config.Config, core: Core):
    """--experimental-corrupt-check-time: the leader's periodic check; a mismatch
    raises a CORRUPT alarm through the log (kvcore/server/corruption.py)."""
    if cfg.experimental_corrupt_check_time <= 0:
        return None
    from kvcore.api import rpc_pb2
    from kvcore.server.entry import OP_ALARM

    async def propose_alarm(member_id: int) -> None:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member_id,
                                   alarm=rpc_pb2.CORRUPT)
        await core.propose(OP_ALARM, req.SerializeToString())
    return corruption.start_periodic(core, cfg.experimental_corrupt_check_time, propose_alarm)


def main(argv=None) -> None:
    try:
        cfg = config.parse(argv)
    except config.ConfigError as e:
        _refuse(e)
    logs.setup(**logs.options(cfg))
    if cfg.config_file:
        log.info("loaded server configuration, other configuration command line flags and "
                 "environment variables will be ignored if provided",
                 extra=logs.fields(path=cfg.config_file))
    for w in cfg.warnings:
        log.warning(w)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("configuration", extra={"fields": {
            f.name: getattr(cfg, f.attr) for f in config.FLAGS.values()}})
    for level, msg, extra in cfg.notices:
        getattr(log, "warning" if level == "warn" else level)(msg, extra={"fields": extra})
    # --discovery / --discovery-srv settle the initial cluster; --proxy on|readonly,
    # a data dir holding proxy/ or --discovery-fallback proxy on a full discovery
    # cluster make this process etcd's v2 proxy instead (it never returns then).
    try:
        discovery.bootstrap(cfg)
        run_loop(serve(cfg))
    except SystemExit as e:
        _log_refusal(cfg, e.code)
        raise


def _log_refusal(cfg: config.Config, reason) -> None:
    """A start refused with a reason is also logged at level fatal when --log-outputs
    names a file, as etcd logs its fatal start errors there: a supervisor that drops
    the process's stderr (etcd's functional-test agent) still shows why. Standard
    outputs get the reason once, as the exit message."""
    if isinstance(reason, str) and any(
            o not in ("default", "stderr", "stdout", "/dev/null") for o in cfg.log_outputs):
        log.critical(reason)


def _refuse(e: config.ConfigError) -> None:
    """Report a configuration error the way etcd does, and exit with etcd's code."""
    if e.kind == "usage":      # Go's flag package
        print(f"{e}\nUsage:\n\n  kvcore -h | --help\n    Show the help information.",
              file=sys.stderr)
        sys.exit(2)
    if e.kind == "panic":      # etcd panics on a bad --log-level
        print(f"panic: {e}", file=sys.stderr)
        sys.exit(2)
    msg = "failed to verify flags" if e.kind == "verify" else "failed to start kvcore"
    logs.emit_now("warn", msg, error=str(e))
    sys.exit(1)


if __name__ == "__main__":
    main()
