"""The v2 discovery protocol's decisions (kvcore/discovery/v2.py) against a fake keys
API: who is in, when the cluster is full, and etcd's errors."""
from __future__ import annotations

import pytest

from kvcore.discovery import _go_url_error, v2


class FakeKeys:
    """A token's entries as the v2 keys API would give them."""

    def __init__(self, size: str, entries: list):
        self.size = size
        self.entries = entries        # [(member id hex, "name=url")], in creation order
        self.created: list = []

    def get(self, key):
        if key.endswith("/_config/size"):
            if self.size is None:
                raise v2.KeysError({"errorCode": 100, "message": "Key not found",
                                    "cause": key, "index": 7})
            return v2.Node({"key": key, "value": self.size}), 7
        nodes = [{"key": f"{key}/_config", "dir": True, "createdIndex": 1}]
        nodes += [{"key": f"{key}/{k}", "value": v, "createdIndex": 10 + i,
                   "modifiedIndex": 10 + i} for i, (k, v) in enumerate(self.entries)]
        return v2.Node({"key": key, "nodes": nodes}), 20

    def create(self, key, value):
        name = key.rsplit("/", 1)[1]
        if any(k == name for k, _ in self.entries):
            raise v2.KeysError({"errorCode": 105, "message": "Key already exists"})
        self.entries.append((name, value))
        self.created.append(key)
        return v2.Node({"key": key, "value": value, "createdIndex": 30})

    def watch_next(self, key, after, recursive):
        return v2.Node({"key": key, "createdIndex": after + 1, "modifiedIndex": after + 1})


def _discovery(fake, member_id=0xabc):
    d = v2.Discovery("http://127.0.0.1:1/v2/keys/_etcd/registry/t", "", member_id,
                     sleep=lambda s: None)
    d.client = fake
    return d


def test_the_last_member_completes_the_cluster():
    fake = FakeKeys("3", [("a1", "m1=http://h:1"), ("a2", "m2=http://h:2")])
    out = _discovery(fake).join_cluster("m3=http://h:3")
    assert out == "m1=http://h:1,m2=http://h:2,m3=http://h:3"
    assert fake.created == ["/v2/keys/_etcd/registry/t/abc"]


def test_a_full_cluster_registers_nothing():
    fake = FakeKeys("2", [("a1", "m1=http://h:1"), ("a2", "m2=http://h:2")])
    with pytest.raises(v2.Failed, match="^discovery: cluster is full$"):
        _discovery(fake).join_cluster("m3=http://h:3")
    assert fake.created == []


def test_a_member_already_among_the_first_is_not_turned_away():
    fake = FakeKeys("1", [("abc", "m1=http://h:1"), ("a2", "m2=http://h:2")])
    with pytest.raises(v2.Failed, match="found duplicate id"):   # then its create fails
        _discovery(fake).join_cluster("m1=http://h:1")


@pytest.mark.parametrize("size, error", [("abc", "discovery: size key is bad"),
                                         ("-1", "discovery: size key is bad"),
                                         (None, "100: Key not found (/v2/keys/_etcd/"
                                                "registry/t/_config/size) [7]")])
def test_size_errors_are_etcds(size, error):
    with pytest.raises(v2.Failed) as e:
        _discovery(FakeKeys(size, [])).join_cluster("m1=http://h:1")
    assert str(e.value) == error


def test_two_members_of_one_name_are_etcds_duplicate_name():
    nodes = [v2.Node({"value": "m1=http://h:1"}), v2.Node({"value": "m1=http://h:2"})]
    with pytest.raises(v2.Failed, match="found duplicate name"):
        v2.nodes_to_cluster(nodes, 2)
    with pytest.raises(v2.Failed, match="invalid URL"):
        v2.nodes_to_cluster([v2.Node({"value": "m1"})], 1)


def test_go_url_errors():
    assert _go_url_error("http://h:1/t%zz") == 'parse "http://h:1/t%zz": invalid URL escape "%zz"'
    assert _go_url_error("http://h:x/t") == 'parse "http://h:x/t": invalid port ":x" after host'
    assert _go_url_error("http://h:1/v2/keys/_etcd/registry/t") == ""


def test_unreachable_service_is_retried_with_etcds_backoff():
    calls = {"n": 0}
    slept = []

    class Flaky(FakeKeys):
        def get(self, key):
            calls["n"] += 1
            if calls["n"] <= 10:
                raise v2.ClusterError("error #0: dial tcp h:1: connect: connection refused\n")
            return super().get(key)

    d = _discovery(Flaky("1", []))
    d.sleep = slept.append
    assert d.join_cluster("m1=http://h:1") == "m1=http://h:1"
    assert slept == [2, 4, 8, 16, 32, 64, 128, 256, 256, 256]
