"""etcd's v2 store (etcd 3.4 server/etcdserver/api/v2store), as a pure object.

A tree of directories and keys; every change takes the next index; keys may
expire (their absolute expiry time comes with the request, so every member
applies the same change; ``expire(now)`` removes what is due, driven by the
leader's proposals). The last 1000 events are kept for ``watch`` with a past
index (an older one is etcd's 401 "event index cleared"). No clock, no I/O:
``to_json``/``from_json`` carry the whole state into and out of a snapshot.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import math
import posixpath
from typing import Callable, Optional

from kvcore.v2store import errors as e
from kvcore.v2store.errors import V2Error

HISTORY = 1000
# etcd's minExpireTime (2000-01-01T00:00:00Z): a created key whose expiry is before
# it is permanent (updates and swaps keep such an expiry, and the key expires at once).
MIN_EXPIRE = 946684800.0

# etcd's /v2/stats/store fields, in its order: (name, counted on success, on failure)
STAT_FIELDS = ("getsSuccess", "getsFail", "setsSuccess", "setsFail", "deleteSuccess",
               "deleteFail", "updateSuccess", "updateFail", "createSuccess", "createFail",
               "compareAndSwapSuccess", "compareAndSwapFail", "compareAndDeleteSuccess",
               "compareAndDeleteFail", "expireCount")


def _counted(ok: str, fail: str, ok_errors: frozenset = frozenset()):
    """Count an operation's success or failure in the store's stats, as etcd does.
    ``ok_errors``: the error codes etcd 3.4 counts as a success (its store returns
    them without setting the ``err`` its deferred counter reads)."""
    def wrap(fn):
        def op(self, *args, **kwargs):
            try:
                out = fn(self, *args, **kwargs)
            except V2Error as err:
                self.stats[ok if err.code in ok_errors else fail] += 1
                raise
            self.stats[ok] += 1
            return out
        op.__name__, op.__doc__ = fn.__name__, fn.__doc__
        return op
    return wrap


class Node:
    __slots__ = ("path", "created", "modified", "value", "children", "expire")

    def __init__(self, path: str, index: int, value: Optional[str], expire: Optional[float]):
        self.path = path
        self.created = self.modified = index
        self.value = value                       # None: a directory
        self.children: Optional[dict] = {} if value is None else None
        self.expire = expire                     # unix seconds, None: permanent

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    def extern(self, now: float, recursive: bool = False, sort: bool = False,
               children: bool = True) -> dict:
        """The node as etcd's NodeExtern JSON (Go's field order)."""
        d = {} if self.path == "/" else {"key": self.path}
        if self.is_dir:
            d["dir"] = True
        else:
            d["value"] = self.value
        if self.expire is not None:
            d["expiration"] = _rfc3339(self.expire)
            ttl = _go_ttl(self.expire - now)
            if ttl:              # Go's omitempty: a TTL of 0 is left out
                d["ttl"] = ttl
        if self.is_dir and children:
            # etcd leaves hidden nodes ("_name") out of every listing
            kids = [k for k in self.children.values() if not _is_hidden(k.path)]
            if sort:
                kids.sort(key=lambda n: n.path)
            nodes = [k.extern(now, recursive, sort, children=recursive) for k in kids]
            if nodes:
                d["nodes"] = nodes
        if self.path != "/":
            d["modifiedIndex"] = self.modified
            d["createdIndex"] = self.created
        return d


def _go_ttl(left: float) -> int:
    """etcd's expirationAndTTL: whole seconds left, a started second counted, toward
    zero once due (a key due but not yet expired: 0 or negative)."""
    ns = round(left * 1e9)
    ttl = int(ns / 1e9) if ns < 0 else ns // 1_000_000_000
    if ns > 0 and ns % 1_000_000_000:
        ttl += 1
    return ttl


def _rfc3339(t: float) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    sec = math.floor(t)
    ns = int(round((t - sec) * 1e9))
    if ns >= 1_000_000_000:
        sec, ns = sec + 1, ns - 1_000_000_000
    base = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ns:09d}".rstrip("0") if ns else ""
    return base + frac + "Z"


def _is_hidden(path: str) -> bool:
    """etcd's node.IsHidden: the last name starts with "_"."""
    return path.rsplit("/", 1)[-1].startswith("_")


def _hidden_below(watch_path: str, key: str) -> bool:
    """etcd's watcherHub isHidden: some name of ``key`` below ``watch_path`` is hidden
    (such a change wakes no recursive watcher above it)."""
    if len(watch_path) > len(key):
        return False
    return "/_" in _clean(key[len(watch_path):])


def _clean(p: str) -> str:
    """Go's path.Clean of "/" + p."""
    p = posixpath.normpath("/" + p.lstrip("/"))
    return p if p == "/" else p.rstrip("/")


class Event(dict):
    """{"action", "node", "prevNode"?} plus the store index it happened at."""

    def __init__(self, action: str, node: dict, prev: Optional[dict], index: int,
                 prev_dir: bool = False, space: str = "keys"):
        super().__init__(action=action, node=node)
        if prev is not None:
            self["prevNode"] = prev
        self.index = index
        self.prev_dir = prev_dir
        self.space = space
        self.refresh = False         # a TTL refresh: in the history, seen by no watcher

    def matches(self, key: str, recursive: bool) -> bool:
        if self.space != "keys" or self.refresh:     # watchers see the keys only
            return False
        k = self["node"].get("key", "/")
        if k == key:
            return True
        if recursive and k.startswith(key.rstrip("/") + "/"):
            return True
        # A deleted or expired directory ends the watches below it.
        return (self["action"] in ("delete", "expire") and self.prev_dir
                and key.startswith(self["prevNode"]["key"]))

    @property
    def is_created(self) -> bool:
        return self["action"] == "create" or (self["action"] == "set" and "prevNode" not in self)


class Watcher:
    def __init__(self, key: str, recursive: bool, since: int, deliver: Callable[[Event], None]):
        self.key, self.recursive, self.since, self.deliver = key, recursive, since, deliver


class Store:
    """Two trees share one index and history: "keys" (what /v2/keys sees, etcd's
    /1) and "auth" (etcd's whole store root, where v2 auth keeps /2/...). The
    operations act on the tree chosen with ``space``; "keys" unless told."""

    def __init__(self):
        self.index = 0
        self.root = Node("/", 0, None, None)
        self.spaces = {"keys": self.root, "auth": Node("/", 0, None, None)}
        self._space = "keys"
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.watchers: list[Watcher] = []
        self.expiring = 0          # nodes with an expiry (the leader's timer looks)
        self.stats: collections.Counter = collections.Counter()

    @contextlib.contextmanager
    def space(self, name: str):
        """Run the operations inside the ``with`` on tree ``name``."""
        saved = self.root, self._space
        self.root, self._space = self.spaces[name], name
        try:
            yield self
        finally:
            self.root, self._space = saved

    def stats_json(self) -> dict:
        d = {k: self.stats[k] for k in STAT_FIELDS}
        d["watchers"] = len(self.watchers)
        return d

    # ---- reads ----

    @_counted("getsSuccess", "getsFail")
    def get(self, path: str, recursive: bool, sort: bool, now: float) -> Event:
        path = _clean(path)
        n = self._find(path)
        ev = Event("get", n.extern(now, recursive, sort), None, self.index,
                   space=self._space)
        return ev

    def watch(self, path: str, recursive: bool, since: int,
              deliver: Callable[[Event], None]) -> Optional[Watcher]:
        """Deliver the first event at or after ``since`` (0: the next one) on
        ``path`` (and below it when recursive): from history at once, else when
        it happens; returns the Watcher to ``cancel`` in that case."""
        path = _clean(path)
        if since == 0:
            since = self.index + 1
        if self.history:
            start = self.history[0].index
            if since < start:
                raise V2Error(e.EVENT_INDEX_CLEARED,
                              f"the requested history has been cleared [{start}/{since}]",
                              self.index)
            for ev in self.history:
                if ev.index >= since and ev.matches(path, recursive):
                    deliver(ev)
                    return None
        w = Watcher(path, recursive, since, deliver)
        self.watchers.append(w)
        return w

    def cancel(self, w: Watcher) -> None:
        if w in self.watchers:
            self.watchers.remove(w)

    # ---- writes (each successful one takes the next index) ----

    @_counted("setsSuccess", "setsFail")
    def set(self, path: str, is_dir: bool, value: str, expire: Optional[float], now: float,
            refresh: bool = False) -> Event:
        if refresh:          # the value it refreshes (or: Key not found, a failed set)
            value = self._find(_clean(path)).value or ""
        return self._create(path, is_dir, value, False, True, expire, now, "set", refresh)

    @_counted("createSuccess", "createFail")
    def create(self, path: str, is_dir: bool, value: str, unique: bool,
               expire: Optional[float], now: float) -> Event:
        return self._create(path, is_dir, value, unique, False, expire, now, "create")

    @_counted("updateSuccess", "updateFail", frozenset({e.ROOT_RONLY, e.NOT_FILE}))
    def update(self, path: str, value: str, expire: Optional[float], refresh: bool,
               now: float) -> Event:
        path = _clean(path)
        if path == "/":
            raise V2Error(e.ROOT_RONLY, "/", self.index)
        n = self._find(path)
        if n.is_dir and value:
            raise V2Error(e.NOT_FILE, path, self.index)
        prev = n.extern(now, children=False)
        self.index += 1
        if not n.is_dir:     # etcd's node.Write: a directory keeps its modifiedIndex
            if not refresh:
                n.value = value
            n.modified = self.index
        self._set_expire(n, expire)
        node = n.extern(now, children=False)
        node["modifiedIndex"] = self.index
        return self._record(Event("update", node, prev, self.index), refresh)

    @_counted("compareAndSwapSuccess", "compareAndSwapFail", frozenset({e.ROOT_RONLY}))
    def compare_and_swap(self, path: str, prev_value: str, prev_index: int, value: str,
                         expire: Optional[float], refresh: bool, now: float) -> Event:
        path = _clean(path)
        if path == "/":
            raise V2Error(e.ROOT_RONLY, "/", self.index)
        n = self._find(path)
        if n.is_dir:
            raise V2Error(e.NOT_FILE, path, self.index)
        self._compare(n, prev_value, prev_index)
        prev = n.extern(now, children=False)
        self.index += 1
        if not refresh:
            n.value = value
        n.modified = self.index
        self._set_expire(n, expire)
        return self._record(Event("compareAndSwap", n.extern(now, children=False), prev,
                                  self.index), refresh)

    @_counted("deleteSuccess", "deleteFail", frozenset({e.ROOT_RONLY}))
    def delete(self, path: str, is_dir: bool, recursive: bool, now: float) -> Event:
        path = _clean(path)
        if path == "/":
            raise V2Error(e.ROOT_RONLY, "/", self.index)
        if recursive:
            is_dir = True
        n = self._find(path)
        if n.is_dir:
            if not is_dir:
                raise V2Error(e.NOT_FILE, path, self.index)
            if n.children and not recursive:
                raise V2Error(e.DIR_NOT_EMPTY, path, self.index)
        return self._remove(n, "delete", now)

    @_counted("compareAndDeleteSuccess", "compareAndDeleteFail",
              frozenset({e.NOT_FILE, e.TEST_FAILED}))
    def compare_and_delete(self, path: str, prev_value: str, prev_index: int,
                           now: float) -> Event:
        path = _clean(path)
        n = self._find(path)
        if n.is_dir:     # etcd's cause is the root's store path "/1", which it trims to ""
            raise V2Error(e.NOT_FILE, "" if path == "/" else path, self.index)
        self._compare(n, prev_value, prev_index)
        return self._remove(n, "compareAndDelete", now)

    def expire(self, now: float) -> list[Event]:
        """Remove every node due at ``now`` (etcd's DeleteExpiredKeys)."""
        due = sorted((n for n in self._walk(self.root) if n.expire is not None
                      and n.expire <= now), key=lambda n: (n.expire, n.path))
        out = []
        for n in due:
            if self._alive(n):
                out.append(self._remove(n, "expire", now))
        self.stats["expireCount"] += len(out)
        return out

    def next_expiry(self) -> Optional[float]:
        if not self.expiring:
            return None
        times = [n.expire for n in self._walk(self.root) if n.expire is not None]
        return min(times) if times else None

    # ---- internals ----

    def _find(self, path: str) -> Node:
        n = self.root
        if path == "/":
            return n
        for part in path.strip("/").split("/"):
            # etcd's walk: the first missing component is the cause.
            if not n.is_dir:
                raise V2Error(e.NOT_DIR, n.path, self.index)
            if part not in n.children:
                raise V2Error(e.KEY_NOT_FOUND, _clean(f"{n.path}/{part}"), self.index)
            n = n.children[part]
        return n

    def _alive(self, node: Node) -> bool:
        try:
            return self._find(node.path) is node
        except V2Error:
            return False

    def _walk(self, n: Node):
        yield n
        if n.is_dir:
            for c in list(n.children.values()):
                yield from self._walk(c)

    def _compare(self, n: Node, prev_value: str, prev_index: int) -> None:
        index_ok = prev_index == 0 or n.modified == prev_index
        value_ok = prev_value == "" or n.value == prev_value
        if index_ok and value_ok:
            return
        if not index_ok and value_ok:
            cause = f"[{prev_index} != {n.modified}]"
        elif index_ok:
            cause = f"[{prev_value} != {n.value}]"
        else:
            cause = f"[{prev_value} != {n.value}] [{prev_index} != {n.modified}]"
        raise V2Error(e.TEST_FAILED, cause, self.index)

    def _set_expire(self, n: Node, expire: Optional[float]) -> None:
        if (n.expire is None) != (expire is None):
            self.expiring += 1 if expire is not None else -1
        n.expire = expire

    def _create(self, path, is_dir, value, unique, replace, expire, now, action,
                refresh=False) -> Event:
        path = _clean(path)
        if expire is not None and expire < MIN_EXPIRE:
            expire = None        # etcd's internalCreate: taken as a garbled time
        if unique:
            path = _clean(f"{path}/{self.index + 1:020d}")
        if path == "/":
            raise V2Error(e.ROOT_RONLY, "/", self.index)
        parent_path, name = posixpath.split(path)
        # Check before changing anything: the parents must be directories.
        n = self.root
        for part in [p for p in parent_path.strip("/").split("/") if p]:
            nxt = n.children.get(part)
            if nxt is None:
                break
            if not nxt.is_dir:
                if action == "create":   # etcd's internalCreate counts it (a set
                    self.stats["setsFail"] += 1     # fails before, in its own lookup)
                raise V2Error(e.NOT_DIR, nxt.path, self.index)
            n = nxt
        prev = None
        existing = self._find_or_none(path)
        if existing is not None:
            if not replace:
                raise V2Error(e.NODE_EXIST, path, self.index)
            if existing.is_dir:
                raise V2Error(e.NOT_FILE, path, self.index)
            prev = existing.extern(now, children=False)
        self.index += 1
        parent = self._mkdirs(parent_path)
        if existing is not None:
            self._set_expire(existing, None)
        node = Node(path, self.index, None if is_dir else value, None)
        self._set_expire(node, expire)
        parent.children[name] = node
        return self._record(Event(action, node.extern(now, children=False), prev, self.index),
                            refresh)

    def _find_or_none(self, path: str) -> Optional[Node]:
        try:
            return self._find(path)
        except V2Error as err:
            if err.code == e.NOT_DIR:
                raise
            return None

    def _mkdirs(self, path: str) -> Node:
        n = self.root
        for part in [p for p in path.strip("/").split("/") if p]:
            nxt = n.children.get(part)
            if nxt is None:
                nxt = Node(_clean(f"{n.path}/{part}"), self.index, None, None)
                n.children[part] = nxt
            n = nxt
        return n

    def _remove(self, n: Node, action: str, now: float) -> Event:
        prev = n.extern(now, children=False)
        self.index += 1
        parent = self._find(posixpath.dirname(n.path))
        del parent.children[posixpath.basename(n.path)]
        for gone in self._walk(n):
            if gone.expire is not None:
                self.expiring -= 1
        node = {"key": n.path}
        if n.is_dir:
            node["dir"] = True
        node["modifiedIndex"] = self.index
        node["createdIndex"] = n.created
        return self._record(Event(action, node, prev, self.index, prev_dir=n.is_dir))

    def _record(self, ev: Event, refresh: bool = False) -> Event:
        ev.space = self._space
        ev.refresh = refresh
        self.history.append(ev)
        if self.watchers:
            keep = []
            key = ev["node"].get("key", "/")
            for w in self.watchers:
                if (ev.index >= w.since and (key == w.key or not _hidden_below(w.key, key))
                        and ev.matches(w.key, w.recursive)):
                    w.deliver(ev)
                else:
                    keep.append(w)
            self.watchers = keep
        return ev

    # ---- snapshot ----

    def to_json(self) -> dict:
        def node(n: Node):
            d = {"p": n.path, "c": n.created, "m": n.modified}
            if n.expire is not None:
                d["e"] = n.expire
            if n.is_dir:
                d["k"] = [node(c) for c in n.children.values()]
            else:
                d["v"] = n.value
            return d
        out = {"index": self.index, "root": node(self.spaces["keys"])}
        if self.spaces["auth"].children:
            out["auth"] = node(self.spaces["auth"])
        return out

    @staticmethod
    def event_json(ev: Event) -> dict:
        d = {"i": ev.index, "d": ev.prev_dir, "e": dict(ev)}
        if ev.space != "keys":
            d["s"] = ev.space
        if ev.refresh:
            d["r"] = True
        return d

    def restore_history(self, docs) -> None:
        """Refill the history from ``event_json`` documents (any order, stale ones
        from an older lap of the ring skipped)."""
        keep = sorted((d for d in docs if self.index - HISTORY < d["i"] <= self.index),
                      key=lambda d: d["i"])
        self.history.clear()
        for d in keep:
            e = d["e"]
            ev = Event(e["action"], e["node"], e.get("prevNode"), d["i"],
                       prev_dir=d["d"], space=d.get("s", "keys"))
            ev.refresh = d.get("r", False)
            self.history.append(ev)

    @classmethod
    def from_json(cls, d: dict) -> "Store":
        s = cls()
        s.index = d["index"]

        def node(x) -> Node:
            n = Node(x["p"], x["c"], x.get("v"), x.get("e"))
            n.modified = x["m"]
            if n.expire is not None:
                s.expiring += 1
            for c in x.get("k", []):
                child = node(c)
                n.children[posixpath.basename(child.path)] = child
            return n
        s.root = s.spaces["keys"] = node(d["root"])
        if "auth" in d:
            s.spaces["auth"] = node(d["auth"])
        return s
