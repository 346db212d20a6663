"""/v2/keys requests as etcd 3.4's v2http parses them (parseKeyRequest), the
store call each one becomes (applyV2Request), and the answer it writes
(writeKeyEvent / writeKeyError). The worker parses; the core applies."""
from __future__ import annotations

from typing import Optional

from kvcore.gateway.codec import dumps
from kvcore.v2store import errors as e
from kvcore.v2store import goform
from kvcore.v2store.errors import V2Error
from kvcore.v2store.store import Store

KEYS_PREFIX = "/v2/keys"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _bool(form: dict, name: str, message: Optional[str] = None) -> bool:
    vals = form.get(name)
    if not vals:
        return False
    v = vals[0]
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise V2Error(e.INVALID_FIELD, message or f'invalid value for "{name}"')


def _uint(form: dict, name: str, code: int) -> int:
    vals = form.get(name)
    if not vals:
        return 0
    try:
        v = int(vals[0], 10)
        # strconv.ParseUint: ASCII digits only (no sign, space or "_")
        if v >= 1 << 64 or not vals[0] or vals[0].strip("0123456789"):
            raise ValueError
        return v
    except ValueError:
        raise V2Error(code, f'invalid value for "{name}"') from None


def parse(method: str, target: str, body: bytes, content_type: str) -> dict:
    """A /v2/keys request as a dict the core can apply (or V2Error, index 0)."""
    raw_path, _, query = target.partition("?")
    form, err = goform.parse_form(method, query, body, content_type)
    if err is not None:
        raise V2Error(e.INVALID_FORM, err)
    path = goform.unescape_path(raw_path)[len(KEYS_PREFIX):] or "/"
    req = {"method": method, "path": path}
    req["prevIndex"] = _uint(form, "prevIndex", e.INDEX_NAN)
    req["waitIndex"] = _uint(form, "waitIndex", e.INDEX_NAN)
    for name in ("recursive", "sorted", "wait", "dir", "quorum", "stream"):
        req[name] = _bool(form, name)
    if req["wait"] and method != "GET":
        raise V2Error(e.INVALID_FIELD, '"wait" can only be used with GET requests')
    pv = form.get("prevValue", [""])[0]
    if "prevValue" in form and pv == "":
        raise V2Error(e.PREV_VALUE_REQUIRED, '"prevValue" cannot be empty')
    req["prevValue"] = pv
    req["noValueOnSuccess"] = _bool(form, "noValueOnSuccess")
    ttl = None
    if form.get("ttl", [""])[0]:
        ttl = _uint(form, "ttl", e.TTL_NAN)
    req["ttl"] = ttl
    req["prevExist"] = None
    if "prevExist" in form:
        req["prevExist"] = _bool(form, "prevExist", "invalid value for prevExist")
    req["refresh"] = False
    if "refresh" in form:
        req["refresh"] = _bool(form, "refresh", "invalid value for refresh")
        if req["refresh"]:
            if form.get("value", [""])[0] != "":
                raise V2Error(e.REFRESH_VALUE, "A value was provided on a refresh")
            if ttl is None:
                raise V2Error(e.REFRESH_TTL_REQUIRED, "No TTL value set")
    req["value"] = form.get("value", [""])[0]
    if method == "GET" and req["quorum"]:
        req["method"] = "QGET"
    return req


def request(method: str, path: str, value: str = "", is_dir: bool = False,
            prev_exist: Optional[bool] = None) -> dict:
    """A request made inside the server (v2 auth's store calls), as ``parse`` makes them."""
    return {"method": method, "path": path, "prevIndex": 0, "waitIndex": 0,
            "recursive": False, "sorted": False, "wait": False, "dir": is_dir,
            "quorum": False, "stream": False, "prevValue": "", "noValueOnSuccess": False,
            "ttl": None, "prevExist": prev_exist, "refresh": False, "value": value}


def with_expiry(req: dict, now: float) -> dict:
    """etcd turns ttl into an absolute expiry where the request arrives."""
    req = dict(req)
    req["now"] = now
    req["expire"] = None if req.get("ttl") is None else go_expiry(now, req["ttl"])
    return req


def _int64(v: int) -> int:
    """Go's int64 wrap-around."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def go_expiry(now: float, ttl: int) -> Optional[float]:
    """etcd's ``clock.Now().Add(time.Duration(ttl) * time.Second).UnixNano()`` in
    seconds: int64 nanoseconds that wrap, so a TTL past ~292 years (or an expiry past
    2262) gives a time already gone, as on etcd (the key expires at once), never a
    date no clock function takes; 0 (no expiry to etcd's apply) is permanent."""
    d = _int64(_int64(ttl) * 1_000_000_000)
    ns = _int64(int(now * 1e9) + d)
    if d == ttl * 1_000_000_000 and ns == int(now * 1e9) + d:
        return now + ttl      # nothing wrapped: the exact sum
    return ns / 1e9 if ns else None


def apply(store: Store, req: dict):
    """One request against the store (etcd's applyV2Request) -> Event."""
    m, path, now, exp = req["method"], req["path"], req["now"], req.get("expire")
    if m == "POST":
        return store.create(path, req["dir"], req["value"], True, exp, now)
    if m == "PUT":
        pe = req["prevExist"]
        if pe is not None:
            if pe:
                if req["prevIndex"] == 0 and req["prevValue"] == "":
                    return store.update(path, req["value"], exp, req["refresh"], now)
                return store.compare_and_swap(path, req["prevValue"], req["prevIndex"],
                                              req["value"], exp, req["refresh"], now)
            return store.create(path, req["dir"], req["value"], False, exp, now)
        if req["prevIndex"] > 0 or req["prevValue"] != "":
            return store.compare_and_swap(path, req["prevValue"], req["prevIndex"],
                                          req["value"], exp, req["refresh"], now)
        return store.set(path, req["dir"], req["value"], exp, now, req["refresh"])
    if m == "DELETE":
        if req["prevIndex"] > 0 or req["prevValue"] != "":
            return store.compare_and_delete(path, req["prevValue"], req["prevIndex"], now)
        return store.delete(path, req["dir"], req["recursive"], now)
    if m in ("GET", "QGET"):
        return store.get(path, req["recursive"], req["sorted"], now)
    raise V2Error(e.INVALID_FORM, f"method {m}")


def event_body(ev: dict, no_value: bool) -> bytes:
    if no_value and ev["action"] in ("set", "compareAndSwap", "create", "update"):
        ev = {"action": ev["action"]}
    return dumps(ev) + b"\n"


def is_write(req: dict) -> bool:
    return req["method"] in ("POST", "PUT", "DELETE", "QGET")
