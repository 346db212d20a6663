"""Member and cluster identity, derived exactly as etcd derives them, so a kvcore
member started with etcd's flags reports the IDs etcd would."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def member_id(peer_urls: list[str], cluster_token: str) -> int:
    b = "".join(sorted(peer_urls)).encode() + cluster_token.encode()
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


def cluster_id(member_ids: list[int]) -> int:
    b = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list
    client_urls: list = field(default_factory=list)
    is_learner: bool = False


def initial_members(initial_cluster: dict[str, list[str]], token: str) -> list[Member]:
    return [Member(member_id(urls, token), name, list(urls)) for name, urls in initial_cluster.items()]
