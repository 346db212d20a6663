"""kvcoreutl's commands on the data dir of a stopped kvcore member: defrag, hashkv,
and migrate from a stopped etcd member's data dir."""
from __future__ import annotations

import os

from kvcore.storage import backend as be


def _db_dir(data_dir: str) -> str:
    path = os.path.join(data_dir, "member", "snap", "db")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no kvcore database at {path}")
    return path


def defrag(data_dir: str) -> tuple[int, int]:
    """A compacting copy of the LMDB file swapped in (free pages dropped).
    -> (size before, size after)."""
    b = be.Backend(_db_dir(data_dir))
    try:
        return b.defrag()
    finally:
        b.close()


def hashkv(data_dir: str, rev: int = 0) -> dict:
    """etcd's HashKV over the member's data (etcdutl 3.6's `hashkv` output)."""
    from kvcore.mvcc.store import KVStore
    b = be.Backend(_db_dir(data_dir))
    try:
        store = KVStore(b)
        with b.begin_read() as txn:
            h, compact, at = store.hash_kv(txn, rev)
    finally:
        b.close()
    return {"hash": h, "hashRevision": at, "compactRevision": compact}


def migrate(etcd_data_dir: str, data_dir: str, **bootstrap) -> None:
    """A stopped etcd 3.4/3.5 member's backend (member/snap/db) into a new kvcore data
    dir, as a restore without a sha256 trailer (``bootstrap``: the restore's member
    flags, name, initial_cluster, token, peer_urls). Committed v3 changes in etcd's WAL past
    the backend's consistent index (a crash before etcd's batched backend commit) are
    not replayed: the migration refuses, and a clean start and stop of etcd applies
    them."""
    from kvcore.bbolt import Reader
    from kvcore.snapshot import etcdwal, schema as sc
    from kvcore.utl.snapshot import restore
    db = os.path.join(etcd_data_dir, "member", "snap", "db")
    if not os.path.isfile(db):
        raise FileNotFoundError(f"no etcd database at {db}")
    with Reader(db) as r:
        meta = dict(r.bucket(b"meta") or ())
    ci = sc.from_u64(meta.get(sc.META_CONSISTENT_INDEX, sc.u64(0)))
    wal = os.path.join(etcd_data_dir, "member", "wal")
    writes = etcdwal.V3_WRITES_35 if sc.META_TERM in meta else etcdwal.V3_WRITES_34
    pending = etcdwal.committed_v3_writes_after(wal, ci, writes) if os.path.isdir(wal) else 0
    if pending:
        raise ValueError(f"{pending} committed entries in {wal} are past the "
                         f"backend's consistent index {ci} (etcd stopped uncleanly): start "
                         "etcd on it once and stop it cleanly, then migrate")
    restore(db, data_dir=data_dir, skip_hash_check=True, **bootstrap)
