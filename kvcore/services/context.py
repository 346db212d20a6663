"""The server context: everything a service may use of the core, and nothing more.

The core (kvcore/server/core.py) implements it; services receive it as ``ctx`` and
use only the names below (no private attributes of the core). State objects are
read through ``ctx`` at call time, never kept: a snapshot install replaces them.

Proposing and reading
  propose(op, payload[, decoded])     a client's proposal: checks the size and that
  -> future                           there is a leader, fails with the request timeout;
                                      resolves with the applier's response bytes.
                                      ``decoded``: the payload as the service already
                                      decoded it; this member's applier then gets it
                                      instead of the bytes (appliers of such ops take
                                      either), so the proposing member decodes once
  propose_internal(op, payload)       the member's own proposal (lease expiry,
  -> future                           checkpoints, publish): no deadline; the caller
                                      handles failure (``log_failure``)
  propose_conf_change(cc) -> future   a membership change; resolves with the applied
                                      index once applied here (or fails on timeout)
  linearizable(fn) -> future          ``fn()`` once this member has applied everything
                                      committed when the call arrived (ReadIndex)
  read(fn)                            ``fn(ReadView)`` in one backend read transaction
  header(rev) -> bytes                the ResponseHeader bytes for a response at ``rev``
  request_timeout                     seconds (etcd's: 5 s + 2 election timeouts)
  applied_index                       the Raft index applied to the backend

Identity and configuration (read only)
  loop, cfg (kvcore/server/config.py), member_id, cluster_id

State (read only outside appliers; appliers change it in their ``txn``)
  store (mvcc.KVStore), lessor (lease.Lessor), membership, alarms, auth (AuthStore),
  watch_hub (mvcc.WatchHub), backend (size figures, and the snapshot export's and
  Hash's read of it: kvcore/snapshot/export.py), quota (services/quota.py),
  metrics (kvcore/metrics/member.py: plain counters and histograms)

Raft status and control
  raft: lead, term, committed, is_leader, id, progress(), transfer_leader(id)
  leader_confirmed() -> bool           this member leads and a quorum said so lately (within
                                      half an election timeout): lease renewals and expiry
  confirm_leadership() -> awaitable   True once the next such round succeeds, else False
  lease_to_leader(leader_id, kind,    a follower's lease request answered by the leader
    request, timeout) -> awaitable    (kvcore/server/peer_lease.py): its response bytes
                                      without header
  peer_active_since(pid)              time.monotonic() when this member's contact with
    -> float or None                  peer ``pid`` began (None: none now; etcd's
                                      ActiveSince, kvcore/server/peer_contact.py)

Helpers
  schedule_catch_up()                 watchers behind the store catch up next turn
  defragment_backend() -> awaitable   compacts the backend file in place (applies
                                      held, Raft going on); (size before, after)
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Optional, Protocol

log = logging.getLogger("kvcore.core")


class ServerContext(Protocol):
    loop: Any
    cfg: Any
    member_id: int
    cluster_id: int
    raft: Any
    store: Any
    lessor: Any
    membership: Any
    alarms: Any
    auth: Any
    watch_hub: Any
    backend: Any
    quota: Any
    metrics: Any

    def propose(self, op: int, payload: bytes, decoded: Any = None) -> Awaitable[bytes]: ...
    def propose_internal(self, op: int, payload: bytes) -> Awaitable[bytes]: ...
    def propose_conf_change(self, cc) -> Awaitable[int]: ...
    def linearizable(self, fn: Callable[[], Any]) -> Awaitable[Any]: ...
    def read(self, fn: Callable[[Any], Any]) -> Any: ...
    def header(self, rev: int) -> bytes: ...
    def schedule_catch_up(self) -> None: ...
    def defragment_backend(self) -> Awaitable[tuple]: ...
    def leader_confirmed(self) -> bool: ...

    def confirm_leadership(self) -> Awaitable[bool]: ...

    def lease_to_leader(self, leader_id: int, kind: int, request: bytes,
                        timeout: float) -> Awaitable[bytes]: ...

    @property
    def peer_active_since(self, pid: int) -> Optional[float]: ...

    def request_timeout(self) -> float: ...

    @property
    def applied_index(self) -> int: ...


def log_failure(fut) -> None:
    """Done-callback for an internal proposal whose failure only needs a log line."""
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("internal proposal failed: %s", fut.exception())
