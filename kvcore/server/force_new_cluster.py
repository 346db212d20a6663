"""etcd's --force-new-cluster: a member of a cluster that lost quorum becomes the only
member of its cluster, keeping its data.

At start, before Raft is restored: the log is cut at the commit index (what was never
committed is dropped, as etcd does), and one RemoveNode conf change per other member
is appended at the current term and marked committed in the WAL. Raft then applies
them like any committed entries: the membership and the voters shrink to this member,
which elects itself and serves. Committed data is never lost."""
from __future__ import annotations

import logging

from kvcore.raft import codec as rcodec
from kvcore.raft.types import ConfChange, ConfChangeType, EntryConfChange
from kvcore.storage.wal import WAL, HardState, WalContents

log = logging.getLogger("kvcore.core")

_ADDS = (ConfChangeType.AddNode, ConfChangeType.AddLearnerNode)


def members_at_commit(contents: WalContents, applied_ids: set, applied_index: int) -> set:
    """The member IDs as of the commit index: those applied to the backend, then the
    committed conf changes after it."""
    ids = set(applied_ids)
    for index, _, etype, data in contents.entries:
        if index <= applied_index or index > contents.state.commit:
            continue
        if etype == EntryConfChange:
            for ch in rcodec.decode_conf_change(data).changes:
                if ch.type in _ADDS:
                    ids.add(ch.node_id)
                elif ch.type == ConfChangeType.RemoveNode:
                    ids.discard(ch.node_id)
    return ids


def rewrite(wal: WAL, contents: WalContents, member_id: int, ids: set) -> None:
    """Cuts ``contents`` at the commit index and appends, committed, the removal of
    every member but ``member_id`` (saved to the WAL, so a crash right after is safe)."""
    st = contents.state
    kept = [e for e in contents.entries if e[0] <= st.commit]
    last = kept[-1][0] if kept else contents.snapshot_index
    removals = []
    for i, nid in enumerate(sorted(ids - {member_id})):
        cc = ConfChange.single(ConfChangeType.RemoveNode, nid)
        removals.append((last + 1 + i, st.term, EntryConfChange, rcodec.encode_conf_change(cc)))
    dropped = len(contents.entries) - len(kept)
    commit = last + len(removals)
    hs = HardState(st.term, st.vote, commit)
    wal.save(hs, removals)
    contents.entries = kept + removals
    contents.state = hs
    log.warning("--force-new-cluster: dropped %d uncommitted entries; removing members %s",
                dropped,
                ", ".join(f"{i:x}" for i in sorted(ids - {member_id})) or "(none)")
