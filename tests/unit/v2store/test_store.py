"""The v2 store's rules (etcd 3.4's v2store): indexes, errors, TTLs, CAS,
in-order keys, history and watchers."""
from __future__ import annotations

import pytest

from kvcore.v2store import Store, V2Error
from kvcore.v2store.store import HISTORY, _rfc3339


def test_set_get_update_and_created_index():
    s = Store()
    ev = s.set("/message", False, "Hello etcd", None, 0)
    assert ev == {"action": "set", "node": {"key": "/message", "value": "Hello etcd",
                                            "modifiedIndex": 1, "createdIndex": 1}}
    assert ev.is_created
    ev = s.set("/message", False, "Hello world", None, 0)
    assert ev["node"]["createdIndex"] == 2 and ev["prevNode"]["value"] == "Hello etcd"
    assert not ev.is_created
    ev = s.compare_and_swap("/message", "Hello world", 0, "y", None, False, 0)
    assert (ev["action"], ev["node"]["createdIndex"], ev["node"]["modifiedIndex"]) == \
        ("compareAndSwap", 2, 3)
    with pytest.raises(V2Error) as err:
        s.compare_and_swap("/message", "nope", 0, "x", None, False, 0)
    assert (err.value.code, err.value.cause, err.value.index) == (101, "[nope != y]", 3)
    with pytest.raises(V2Error) as err:
        s.compare_and_swap("/message", "nope", 7, "x", None, False, 0)
    assert err.value.cause == "[nope != y] [7 != 3]"
    with pytest.raises(V2Error) as err:
        s.get("/nothere", False, False, 0)
    assert (err.value.code, err.value.status, err.value.cause) == (100, 404, "/nothere")
    assert s.get("/message", False, False, 0)["node"]["value"] == "y"


def test_dirs_in_order_keys_and_deletes():
    s = Store()
    s.set("/dir", True, "", None, 0)
    ev = s.create("/dir", False, "one", True, None, 0)
    assert ev["node"]["key"] == "/dir/00000000000000000002"
    s.set("/dir/b", False, "2", None, 0)
    listing = s.get("/dir", True, True, 0)["node"]
    assert [n["key"] for n in listing["nodes"]] == ["/dir/00000000000000000002", "/dir/b"]
    with pytest.raises(V2Error) as err:
        s.delete("/dir", False, False, 0)
    assert (err.value.code, err.value.status) == (102, 403)
    with pytest.raises(V2Error) as err:
        s.delete("/dir", True, False, 0)
    assert err.value.code == 108
    ev = s.delete("/dir", False, True, 0)
    assert ev == {"action": "delete",
                  "node": {"key": "/dir", "dir": True, "modifiedIndex": 4, "createdIndex": 1},
                  "prevNode": {"key": "/dir", "dir": True, "modifiedIndex": 1, "createdIndex": 1}}
    with pytest.raises(V2Error) as err:
        s.set("/f", False, "x", None, 0) and s.set("/f/g", False, "y", None, 0)
    assert (err.value.code, err.value.cause) == (104, "/f")
    with pytest.raises(V2Error) as err:
        s.create("/f", False, "z", False, None, 0)
    assert (err.value.code, err.value.status) == (105, 412)
    with pytest.raises(V2Error) as err:
        s.delete("/", True, True, 0)
    assert err.value.code == 107


T = 1_700_000_000.0     # a clock past etcd's minExpireTime (2000-01-01)


def test_ttl_expiry_and_refresh():
    s = Store()
    ev = s.set("/t", False, "v", T + 105.5, T + 100.0)
    assert ev["node"]["ttl"] == 6 and ev["node"]["expiration"] == _rfc3339(T + 105.5)
    assert s.expire(T + 105.0) == []
    s.update("/t", "", T + 120.0, True, T + 105.0)          # refresh: value kept
    assert s.get("/t", False, False, T + 106.0)["node"]["value"] == "v"
    seen = []
    s.watch("/t", False, 0, seen.append)
    evs = s.expire(T + 121.0)
    assert [e["action"] for e in evs] == ["expire"] and seen == evs
    assert s.next_expiry() is None and s.expiring == 0


def test_an_expiry_before_2000_is_permanent_on_create_only():
    """etcd's internalCreate (set, create, in-order POST) takes an expiry before its
    minExpireTime as no expiry; update and compare-and-swap keep it (gone at once)."""
    s = Store()
    ev = s.set("/old", False, "v", 946684799.0, T)
    assert "expiration" not in ev["node"] and s.expiring == 0
    s.create("/q", False, "x", True, -5.0, T)
    assert s.expiring == 0
    s.set("/u", False, "v", None, T)
    ev = s.update("/u", "w", 946684799.0, False, T)
    assert "expiration" in ev["node"] and s.expiring == 1
    assert [e["action"] for e in s.expire(T)] == ["expire"]


def test_watch_history_and_cleared_index():
    s = Store()
    for i in range(HISTORY + 5):
        s.set("/k", False, str(i), None, 0)
    got = []
    s.watch("/k", False, 10, got.append)
    assert got[0]["node"]["value"] == "9"
    with pytest.raises(V2Error) as err:
        s.watch("/k", False, 2, got.append)
    assert (err.value.code, err.value.cause) == (
        401, f"the requested history has been cleared [6/2]")
    rec = []
    s.watch("/d", True, 0, rec.append)
    s.set("/d/x/y", False, "1", None, 0)
    assert rec[0]["node"]["key"] == "/d/x/y"


def test_snapshot_round_trip():
    s = Store()
    s.set("/a/b", False, "1", T + 50.0, T)
    s.create("/q", False, "x", True, None, 0)
    t = Store.from_json(s.to_json())
    assert t.index == s.index and t.expiring == 1
    assert t.get("/", True, True, 0) == s.get("/", True, True, 0)


def test_auth_tree_shares_the_index_but_not_the_keys_or_watchers():
    s = Store()
    seen = []
    s.watch("/2", True, 0, seen.append)
    with s.space("auth"):
        ev = s.set("/2/enabled", False, "false", None, 0)
    assert ev.index == s.index == 1 and seen == []       # no keys watcher fires
    with pytest.raises(V2Error) as err:
        s.get("/2/enabled", False, False, 0)              # not a key
    assert err.value.code == 100
    s.set("/2/x", False, "k", None, 0)                    # a key of that name
    assert seen and seen[0]["node"]["key"] == "/2/x" and s.index == 2
    back = Store.from_json(s.to_json())
    back.restore_history(Store.event_json(e) for e in s.history)
    with back.space("auth"):
        assert back.get("/2/enabled", False, False, 0)["node"]["value"] == "false"
    assert back.get("/2/x", False, False, 0)["node"]["value"] == "k"
    late = []
    assert back.watch("/2/enabled", False, 1, late.append) is not None and late == []


def test_hidden_nodes_stay_out_of_listings_and_live_watches():
    # etcd's v2store: a name starting with "_" is hidden (node.IsHidden); a directory
    # listing leaves it out at every depth (the etcd-discovery service's token dir then
    # shows no "nodes" at all), a GET of the key itself still finds it, and a recursive
    # watcher is not woken by a change under a hidden name (watcherHub.isHidden); the
    # history scan has no such check.
    s = Store()
    s.set("/reg/tok/_config/size", False, "3", None, 0)
    assert s.get("/reg/tok", False, False, 0)["node"] == {
        "key": "/reg/tok", "dir": True, "modifiedIndex": 1, "createdIndex": 1}
    s.set("/reg/tok/m1", False, "a", None, 0)
    listing = s.get("/reg", True, True, 0)["node"]["nodes"][0]["nodes"]
    assert [n["key"] for n in listing] == ["/reg/tok/m1"]
    assert s.get("/reg/tok/_config/size", False, False, 0)["node"]["value"] == "3"
    seen = []
    s.watch("/reg", True, 0, seen.append)
    s.set("/reg/tok/_config/size", False, "5", None, 0)
    assert seen == []
    s.set("/reg/tok/m2", False, "b", None, 0)
    assert [ev["node"]["key"] for ev in seen] == ["/reg/tok/m2"]
    direct = []
    s.watch("/reg/tok/_config/size", False, 0, direct.append)
    s.set("/reg/tok/_config/size", False, "6", None, 0)
    assert [ev["node"]["value"] for ev in direct] == ["6"]
    history = []
    s.watch("/reg", True, 3, history.append)      # index 3: the hidden size update
    assert history[0]["node"]["key"] == "/reg/tok/_config/size"
