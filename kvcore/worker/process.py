"""A worker process: serves every client URL (accepting on the listening sockets the
core bound and passed down, shared with the other workers; see
kvcore/engine/client_listeners.py) with the chosen gRPC engine and forwards each
call to the core.

It dies with the core: PR_SET_PDEATHSIG, plus exiting when the IPC connection
closes, so no worker outlives its member.
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys

from kvcore import _ext
from kvcore.api.methods import METHOD_ID, STREAMING
from kvcore.engine.base import MethodTable
from kvcore.gateway import Gateway
from kvcore.engine.native import create_engine
from kvcore.gateway.v2 import V2Handler
from kvcore.ipc import framing as fr
from kvcore.ipc.client import CoreClient
from kvcore.ipc.framing import HTTP_METHOD, V2_METHOD
from kvcore.ipc.readstate import ReadState
from kvcore.metrics import listener as probes
from kvcore.metrics.grpc_stats import GrpcStats
from kvcore.engine import client_listeners
from kvcore.tls import TLSConfigError, TLSInfo
from kvcore.worker import health
from kvcore.worker.edge import Edge, unmarshal_errors
from kvcore.worker.reads import LocalReads
from kvcore.worker.require_leader import RequireLeader

log = logging.getLogger("kvcore.worker")


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


listeners = client_listeners.addresses


def local_answers(path: str, args: dict):
    """The stream requests this worker may answer itself: LeaseKeepAlive from the
    core's shared lease clock (kvcore/lease/lessor.py; etcd checks no token for a
    keep-alive, with auth on or off). None: every request goes to the core."""
    if path != "/etcdserverpb.Lease/LeaseKeepAlive" or args.get("lease_clock_fd", -1) < 0:
        return None
    return _ext.load("leaseclock").LeaseClock.attach(args["lease_clock_fd"]).keepalive


async def run(args: dict) -> None:
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    reads = None
    stats = GrpcStats(extensive=args.get("metrics") == "extensive")
    _, client = await loop.create_unix_connection(
        lambda: CoreClient(lambda: lost.done() or lost.set_result(None),
                           lambda: reads and reads.reopen(), stats.snapshot),
        sock=socket.socket(fileno=args["core_fd"]))

    edge = Edge(client, args["max_txn_ops"])

    def forward(mid: int):
        async def handler(request: bytes, ctx) -> bytes:
            token = fr.call_identity(ctx)
            fut = edge.call(mid, request) if token is None else edge.call_token(mid, request, token)
            try:
                return await fut
            except asyncio.CancelledError:
                client.cancel(fut)   # e.g. a Lock waiter whose client gave up
                raise
        return handler

    read_state = (ReadState.attach(args["read_state_fd"])
                  if args.get("read_state_fd") is not None else None)
    methods = MethodTable(
        unary={p: forward(i) for p, i in METHOD_ID.items() if p not in STREAMING},
        stream={p: client.stream_handler(i, local_answers(p, args))
                for p, i in METHOD_ID.items() if p in STREAMING})
    health.add_to(methods)
    if args.get("db_path"):
        reads = LocalReads(client, args["db_path"], args["db_map_size"], read_state)
        reads.stats = stats
        methods.unary["/etcdserverpb.KV/Range"] = reads.range
    leader_check = None
    if read_state is not None:   # clientv3.WithRequireLeader's calls
        leader_check = RequireLeader(read_state, args.get("election_ms", 1000) / 1000)
        methods = leader_check.wrap(methods)
    methods = stats.instrument(unmarshal_errors(methods), METHOD_ID)

    async def probe(method: str, target: str):
        """/metrics and the health endpoints: the core answers."""
        raw = await client.call(HTTP_METHOD, probes.pack_request(method, target))
        return probes.unpack_response(raw)

    # etcd's gRPC server accepts max-request-bytes plus 512 KiB of overhead; larger
    # requests fail in the transport, smaller ones too big for the log fail later.
    max_recv = args["max_request_bytes"] + 512 * 1024
    v2 = None
    if args.get("enable_v2"):
        v2 = V2Handler(lambda payload: client.call(V2_METHOD, payload), client.cancel)
    gateway = Gateway(methods, probe, cors=args.get("cors"), max_recv=max_recv,
                      parent_pid=args.get("parent"), v2=v2, ui=args.get("enable_ui", True),
                      grpc_gateway=args.get("enable_grpc_gateway", True),
                      host_whitelist=args.get("host_whitelist"))
    engines = []
    tls = TLSInfo.from_dict(args.get("tls"))
    socks = client_listeners.from_args(args.get("listen_fds"))
    for (host, port), (plain, secure) in listeners(args["listen"]).items():
        sock = socks.get((host, port))    # None (no fds given): the engine binds
        limits = ({"max_concurrent_streams": min(args["max_concurrent_streams"], 2 ** 31 - 1)}
                  if args.get("max_concurrent_streams") else {})
        eng = create_engine(args["engine"], methods, http=gateway,
                            max_receive_message_length=max_recv,
                            keepalive=args.get("keepalive"), **limits)
        if not secure:
            await eng.start(host, port, reuse_port=True, sock=sock)
        elif eng.name == "grpcio" and not tls.client_cert_auth:
            # The native front ends TLS (HTTP/1.x: the gateway, /health, /metrics)
            # and splices h2 to grpcio.
            await eng.start(host, port, reuse_port=True, ssl_context=tls.server_context(),
                            allow_plaintext=plain, sock=sock)
        elif eng.name == "grpcio":
            # A client certificate's CN names the gRPC caller: grpcio ends TLS of
            # gRPC connections itself (a splice of decrypted bytes would hide the
            # certificate); the native front ends it for HTTP clients.
            await eng.start(host, port, reuse_port=True, ssl_context=tls.server_context(),
                            credentials=tls.grpc_server_credentials(), allow_plaintext=plain,
                            sock=sock)
        else:
            await eng.start(host, port, reuse_port=True, ssl_context=tls.server_context(),
                            allow_plaintext=plain, sock=sock)
        engines.append(eng)
    monitor = leader_check and asyncio.ensure_future(leader_check.monitor())
    client.send(0, 0, fr.HELLO, str(os.getpid()).encode())  # serving
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: lost.done() or lost.set_result(None))
    await lost
    if monitor:
        monitor.cancel()
    for eng in engines:
        await eng.stop(0.5)


def main() -> None:
    _die_with_parent()
    args = json.loads(sys.argv[1])
    from kvcore import logs
    logs.setup(**args.get("log", {"level": args.get("log_level", "info")}))
    if os.getppid() != args["parent"]:
        sys.exit(0)  # the core died before we could arm PDEATHSIG
    from kvcore.heap import WORKER_TRIM_THRESHOLD
    from kvcore.loop import run_loop
    try:
        run_loop(run(args), WORKER_TRIM_THRESHOLD)
    except (OSError, RuntimeError, TLSConfigError) as e:
        print(f"kvcore worker: {e}", file=sys.stderr)
        sys.exit(3)
