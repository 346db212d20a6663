"""A one-member etcd data dir taken over at start, so etcd's own runbooks work on
kvcore unchanged: `etcdutl snapshot restore ... --data-dir D` then the server started
on D (etcd's disaster recovery), or the binary swapped on a stopped member's D.

What a restore does (kvcoreutl migrate: etcd's backend into kvcore's format, with the
member's own bootstrap flags), but inside D, since D may be a mount point:

1. D/.kvcore-takeover/member is built (a restore's own build-then-rename);
2. D/member (etcd's) is renamed D/member.etcd, kept byte for byte;
3. D/.kvcore-takeover/member is renamed D/member, and the staging dir removed.

Each step is a rename, and ``resume`` finishes or undoes an interrupted one at the next
start: before step 2 nothing of etcd's has moved (the staging dir is dropped and the
takeover runs again); after it, step 3 is finished. The way back to etcd is a snapshot
(`etcdctl snapshot save` from kvcore, `etcdutl snapshot restore`), or, before anything
was written to kvcore, D/member.etcd moved back.

Only for a one-member --initial-cluster: members of a larger cluster each restored from
their own backend would hold different states under one cluster ID; etcd's procedure
restores every member from one snapshot, which `kvcoreutl snapshot restore` does.
"""
from __future__ import annotations

import logging
import os
import shutil

from kvcore import logs

log = logging.getLogger("kvcore.storage")

STAGING = ".kvcore-takeover"
KEPT = "member.etcd"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resume(data_dir: str) -> None:
    """Finish or undo a takeover a crash interrupted (see the module's steps)."""
    staging = os.path.join(data_dir, STAGING)
    if not os.path.isdir(staging):
        return
    member, built = os.path.join(data_dir, "member"), os.path.join(staging, "member")
    if not os.path.exists(member) and os.path.isdir(os.path.join(data_dir, KEPT)) \
            and os.path.isdir(built):
        os.rename(built, member)                       # step 3 had not happened
        log.info("finished taking over etcd's data dir", extra=logs.fields(data_dir=data_dir))
    shutil.rmtree(staging)
    _fsync_dir(data_dir)


def one_member(initial_cluster: str) -> bool:
    return len({p.partition("=")[0] for p in initial_cluster.split(",") if p}) == 1


def take_over(data_dir: str, name: str, initial_cluster: str, token: str,
              peer_urls: list) -> None:
    """etcd's one-member data dir at ``data_dir`` into kvcore's format, in place;
    ValueError (with what to do) when it cannot be."""
    from kvcore.utl.offline import migrate
    if os.path.exists(os.path.join(data_dir, KEPT)):
        raise ValueError(f"{os.path.join(data_dir, KEPT)} is in the way (an earlier "
                         "takeover's copy of etcd's files): move it elsewhere first")
    staging = os.path.join(data_dir, STAGING)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("taking over etcd's data dir", extra=logs.fields(data_dir=data_dir))
    migrate(data_dir, staging, name=name, initial_cluster=initial_cluster, token=token,
            peer_urls=",".join(peer_urls))
    _fsync_dir(staging)
    os.rename(os.path.join(data_dir, "member"), os.path.join(data_dir, KEPT))
    _fsync_dir(data_dir)
    os.rename(os.path.join(staging, "member"), os.path.join(data_dir, "member"))
    _fsync_dir(data_dir)
    shutil.rmtree(staging)
    log.info("took over etcd's data dir; etcd's files are kept as they were",
             extra=logs.fields(data_dir=data_dir, kept=os.path.join(data_dir, KEPT)))
