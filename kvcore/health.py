"""etcd's health endpoints, answered by the core.

``/health`` is etcd 3.5.1's (etcdhttp/metrics.go): an active alarm not excluded
with ``?exclude=NAME`` fails with ``ALARM NOSPACE``/``ALARM CORRUPT``, no leader with
``RAFT NO LEADER``, then a linearizable read must succeed within the request timeout
(``RANGE ERROR:<error>``). 3.5.1 has no ``?serializable`` (it came in 3.5.x later)
and ignores it. Healthy: 200 and ``{"health":"true","reason":""}``; unhealthy: 503
and the JSON plus a newline (Go's http.Error).

``/livez`` and ``/readyz`` are etcd 3.6's: named checks (livez: serializable_read;
readyz: data_corruption, serializable_read, linearizable_read, non_learner), each
also at ``/livez/<check>``; ``?exclude=<check>`` skips one, ``?verbose`` lists
them on success. 200 ``ok``; 503 with ``[-]<check> failed: <error>`` lines.
"""
from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from kvcore.api import rpc_pb2
from kvcore.engine.base import GrpcError

log = logging.getLogger("kvcore.health")

TEXT = "text/plain; charset=utf-8"
_ERROR_HEADERS = [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")]
_ALARM_REASON = {rpc_pb2.NOSPACE: "ALARM NOSPACE", rpc_pb2.CORRUPT: "ALARM CORRUPT"}


async def _read(core, serializable: bool) -> None:
    """A read through Raft (or a local one): raises with etcd's error if it fails."""
    if serializable:
        return
    try:
        await core.read_index_for_worker()
    except asyncio.CancelledError:
        raise
    except GrpcError as e:
        raise _CheckFailed(e.message)
    except Exception as e:
        raise _CheckFailed(str(e))


class _CheckFailed(Exception):
    pass


async def health(core, query: dict) -> tuple[int, list, bytes]:
    excluded = set(query.get("exclude", []))
    reason = None
    for _member, alarm in sorted(core.alarms.active):
        if rpc_pb2.AlarmType.Name(alarm) in excluded:
            continue
        reason = _ALARM_REASON.get(alarm, "ALARM UNKNOWN")
        log.warning("serving /health false due to an alarm: %s", rpc_pb2.AlarmType.Name(alarm))
        break
    if reason is None and not core.raft.lead:
        reason = "RAFT NO LEADER"
        log.warning("serving /health false; no leader")
    if reason is None:
        try:
            await _read(core, False)
        except _CheckFailed as e:
            reason = f"RANGE ERROR:{e}"
            log.warning("serving /health false; Range fails: %s", e)
    if reason is None:
        core.metrics.health_success += 1
        return 200, [("Content-Type", TEXT)], b'{"health":"true","reason":""}'
    core.metrics.health_failures += 1
    body = json.dumps({"health": "false", "reason": reason}, separators=(",", ":"))
    return 503, list(_ERROR_HEADERS), body.encode() + b"\n"


def _alarm_check(core, alarm: int):
    async def check():
        if any(a == alarm for _m, a in core.alarms.active):
            raise _CheckFailed(f"alarm activated: {rpc_pb2.AlarmType.Name(alarm)}")
    return check


def _read_check(core, serializable: bool):
    async def check():
        await _read(core, serializable)
    return check


def _learner_check(core):
    async def check():
        me = core.membership.members.get(core.member_id)
        if me is not None and me.is_learner:
            raise _CheckFailed("not supported for learner")
    return check


def _checks(core, kind: str) -> dict:
    if kind == "livez":
        return {"serializable_read": _read_check(core, True)}
    return {"data_corruption": _alarm_check(core, rpc_pb2.CORRUPT),
            "serializable_read": _read_check(core, True),
            "linearizable_read": _read_check(core, False),
            "non_learner": _learner_check(core)}


async def probe(core, path: str, query: dict) -> tuple[int, list, bytes]:
    """etcd 3.6's /livez, /readyz and their /<kind>/<check> sub-paths."""
    parts = path.strip("/").split("/")
    checks = _checks(core, parts[0])
    if len(parts) == 2:
        if parts[1] not in checks:
            return 404, [("Content-Type", TEXT)], b"404 page not found\n"
        names = [parts[1]]
    else:
        names = [n for n in checks if n not in set(query.get("exclude", []))]
    lines = []
    failed = False
    for name in names:
        try:
            await checks[name]()
            lines.append(f"[+]{name} ok\n")
        except _CheckFailed as e:
            failed = True
            lines.append(f"[-]{name} failed: {e}\n")
    if failed:
        log.error("health check error: %s: %s", path, "".join(lines).strip())
        return 503, list(_ERROR_HEADERS), "".join(lines).encode() + b"\n"
    body = ("".join(lines) if "verbose" in query else "") + "ok\n"
    return 200, list(_ERROR_HEADERS), body.encode()


def is_health_path(path: str) -> bool:
    return path == "/health" or path.split("/")[1] in ("livez", "readyz") and path.count("/") <= 2


async def answer(core, method: str, path: str, query_string: str) -> tuple[int, list, bytes]:
    if method != "GET":
        return 405, [("Allow", "GET"), *_ERROR_HEADERS], b"Method Not Allowed\n"
    query = parse_qs(query_string, keep_blank_values=True)
    if path == "/health":
        return await health(core, query)
    return await probe(core, path, query)
