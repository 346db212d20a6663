"""The LMDB backend: the MVCC key space and the member's metadata.

Named databases (etcd's bbolt buckets):
  key    revision bytes -> mvccpb.KeyValue bytes, exactly as sent to clients
  latest user key -> revision bytes of its live KeyValue (absent once deleted): lets a
         worker process answer reads of the current revision from its own read
         transaction, without the in-memory revision index
  latest_long  the same for keys longer than an LMDB key (kvcore/mvcc/longkeys.py)
  meta   consistent_index, term, scheduled/finished compaction revisions
  lease  lease id -> lease record (Lease/Watch issue)
  members, alarm, auth

Transactions (etcd's backend.ReadTx / BatchTx), the only way to the data:
  ReadTx   ``with backend.begin_read() as tx``: a consistent snapshot of the whole
           database. It lives only inside the ``with`` and never across an
           ``await`` (it pins the pages it sees and holds one of the reader slots);
           values it returns are ``bytes`` that may be kept after it ends. Any
           process may open them (workers open the file read-only).
  BatchTx  ``with backend.begin_write() as tx``: the one writer, in the core only.
           Commits when the ``with`` ends, aborts on an exception. It never spans
           an ``await`` either: the apply loop opens one per batch of committed
           entries, and everything that must survive with the consistent index
           (MVCC, leases, members, alarms, auth) is written in that same one.
  Both are ``lmdb.Transaction`` objects: ``get/put/delete(key, db=...)``,
  ``cursor(db=...)``, ``stat(db)``; a database is one of this backend's handles
  (``key``, ``latest``, ``meta``, ...). Nothing outside this module opens the
  LMDB environment itself.

Durability: the WAL is the durable record. LMDB commits do not fsync (sync=False);
``sync()`` flushes before a snapshot lets WAL segments go, and on clean shutdown.
After a crash, entries above the stored consistent_index are replayed from the WAL,
which is idempotent because the consistent index is written in the same LMDB
transaction as the changes it covers.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import struct
import tempfile

import lmdb

from kvcore.storage import PRIVATE_DIR_MODE, private_dirs, verify

ReadTx = lmdb.Transaction    # see "Transactions" above
BatchTx = lmdb.Transaction

_U64 = struct.Struct(">Q")
_REV = struct.Struct(">QQ")
TOMBSTONE = b"t"

META_CONSISTENT_INDEX = b"consistent_index"
META_TERM = b"term"
META_SCHEDULED_COMPACT = b"scheduledCompactRev"
META_FINISHED_COMPACT = b"finishedCompactRev"
META_CURRENT_REV = b"current_rev"     # store revision after the last applied change
META_MEMBER_ID = b"member_id"
META_CLUSTER_ID = b"cluster_id"
META_CONF_STATE = b"conf_state"       # Raft membership as of the consistent index


def rev_key(main: int, sub: int) -> bytes:
    """16 bytes, big-endian (main, sub): LMDB's byte order is revision order."""
    return _REV.pack(main, sub)


def parse_rev_key(k: bytes) -> tuple[int, int, bool]:
    main, sub = _REV.unpack_from(k)
    return main, sub, len(k) > 16 and k[16:17] == TOMBSTONE


def u64(v: int) -> bytes:
    return _U64.pack(v)


def from_u64(b) -> int:
    return _U64.unpack(b)[0]


MAX_KEY = 511    # the longest LMDB key (lmdb.Environment.max_key_size())
HASHED = b"\xff"  # then the SHA-256 of a name too long for a key (never UTF-8: no name)


def named_key(prefix: bytes, name: bytes) -> bytes:
    """The key of a record named by a user (an auth user or role): ``prefix + name``,
    or, for a name too long for an LMDB key, ``prefix + HASHED + sha256(name)`` (the
    record itself holds its name; etcd takes names of any length)."""
    k = prefix + name
    return k if len(k) <= MAX_KEY else prefix + HASHED + hashlib.sha256(name).digest()


DATA_FILE = "data.mdb"


class BackendWriteError(OSError):
    """A backend commit failed (ENOSPC, EIO): the member must stop (fail-stop)."""


def install(path: str, data_file: str) -> None:
    """Make ``data_file`` (a copy of another member's LMDB data) the database at
    ``path``, a directory. The new file gets a new directory, so a new lock file:
    processes still reading the old one keep a consistent view of it until they
    reopen (LMDB's lock file must never be shared by two different data files).
    A crash between the renames leaves ``path.new``, which ``recover`` finishes."""
    new = path + ".new"
    old = path + ".old"
    shutil.rmtree(new, ignore_errors=True)
    os.mkdir(new, PRIVATE_DIR_MODE)
    os.replace(data_file, os.path.join(new, DATA_FILE))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(new, path)
    _fsync_dir(os.path.dirname(path))
    shutil.rmtree(old, ignore_errors=True)  # open readers keep their (unlinked) inode


def recover(path: str) -> None:
    if not os.path.exists(path) and os.path.exists(path + ".new"):
        os.rename(path + ".new", path)
        _fsync_dir(os.path.dirname(path))


def _fsync_dir(d: str) -> None:
    fd = os.open(d or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Backend:
    def __init__(self, path: str, map_size: int = 8 * 1024 ** 3, readonly: bool = False,
                 check_pages: bool = True):
        """``path`` is a directory (data.mdb + lock.mdb). ``readonly``: a worker's view
        (it never writes; the core owns the data). ``check_pages``: walk every page in
        use before opening (kvcore/storage/lmdbwalk.py; off for a file just written
        here, where the walk would only hold up the loop)."""
        if not readonly:
            recover(path)
            private_dirs(path)
            verify.check_lmdb(os.path.join(path, DATA_FILE), pages=check_pages)
        self.path = path
        self.readonly = readonly
        self._open(map_size)

    def _open(self, map_size: int) -> None:
        self.env = lmdb.open(self.path, subdir=True, map_size=map_size, max_dbs=16,
                             sync=False, metasync=False, readahead=False,
                             max_readers=512, lock=True, readonly=self.readonly,
                             create=not self.readonly)
        self.key = self.env.open_db(b"key")
        self.latest = self.env.open_db(b"latest")
        try:
            self.latest_long = self.env.open_db(b"latest_long")
        except lmdb.ReadonlyError:   # a data dir from before it, opened read-only
            self.latest_long = None
        self.meta = self.env.open_db(b"meta")
        self.lease = self.env.open_db(b"lease")
        self.members = self.env.open_db(b"members")
        self.alarm = self.env.open_db(b"alarm")
        self.auth = self.env.open_db(b"auth")
        self._page_size = self.env.stat()["psize"]   # fixed for the file's life

    def pinned(self) -> "Backend":
        """This backend's current file, for a long reader (a snapshot export) that must
        keep its environment and database handles across a defrag's swap."""
        return copy.copy(self)

    def defrag(self) -> tuple[int, int]:
        """etcd's defragmentation: a compacting copy of the file (free pages dropped)
        made the database, reopened in place. Runs on the writer's thread, so no
        write is lost; readers still in the old file keep it until they finish.
        -> (size before, size after)."""
        before = self.size()
        self.defrag_swap(self.defrag_copy())
        return before, self.size()

    def defrag_copy(self) -> str:
        """The first half of ``defrag``: the compacting copy, into a new directory
        beside the data (returned). Safe on another thread while nothing writes; the
        environment stays as it was."""
        tmp = tempfile.mkdtemp(prefix="defrag-", dir=os.path.dirname(self.path) or ".")
        try:
            self.env.sync(True)
            self.env.copy(tmp, compact=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def defrag_swap(self, tmp: str) -> None:
        """The second half: the copy made the data file, and reopened."""
        map_size = self.env.info()["map_size"]
        try:
            install(self.path, os.path.join(tmp, DATA_FILE))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._open(map_size)    # the old environment closes with its last reader

    def all_dbs(self) -> tuple:
        return tuple(db for db in (self.key, self.latest, self.latest_long, self.meta,
                                   self.lease, self.members, self.alarm, self.auth)
                     if db is not None)

    @contextlib.contextmanager
    def begin_write(self):
        """-> BatchTx in a ``with``: committed at its end, aborted on an exception.
        A failed commit (a full disk) raises BackendWriteError naming the file."""
        txn = self.env.begin(write=True)
        try:
            yield txn
        except BaseException:
            txn.abort()
            raise
        try:
            txn.commit()
        except lmdb.Error as e:
            raise BackendWriteError(
                f"backend write to {os.path.join(self.path, DATA_FILE)} failed: {e}") from None

    def open_write(self):
        """A write transaction the caller ends with ``commit_write`` or ``abort()``
        (begin_write's two halves, for work staged before its commit)."""
        return self.env.begin(write=True)

    def commit_write(self, txn) -> None:
        try:
            txn.commit()
        except lmdb.Error as e:
            raise BackendWriteError(
                f"backend write to {os.path.join(self.path, DATA_FILE)} failed: {e}") from None

    def begin_read(self) -> ReadTx:
        return self.env.begin(buffers=False)

    def get_meta(self, name: bytes, tx: ReadTx) -> int:
        """A u64 from the meta database, read in the caller's transaction."""
        v = tx.get(name, db=self.meta)
        return from_u64(v) if v else 0

    @property
    def map_size(self) -> int:
        """The most the data file may grow to (workers open it with the same)."""
        return self.env.info()["map_size"]

    def high_water_bytes(self) -> int:
        """The file's pages up to the highest one ever used, in bytes."""
        return (self.env.info()["last_pgno"] + 1) * self._page_size

    def copy_compacted(self, directory: str) -> dict:
        """A consistent, compacted copy of the data file into ``directory`` (as
        data.mdb), and the meta values ``keys`` it holds: {name: bytes or None}."""
        self.env.copy(directory, compact=True)
        env = lmdb.open(directory, readonly=True, lock=False, max_dbs=16)
        try:
            with env.begin() as tx:
                meta = env.open_db(b"meta", txn=tx, create=False)
                return {k: tx.get(k, db=meta) for k in (
                    META_CONSISTENT_INDEX, META_TERM, META_CONF_STATE)}
        finally:
            env.close()

    def sync(self) -> None:
        self.env.sync(True)

    def size(self) -> int:
        """Bytes allocated by the database file (etcd's dbSize)."""
        try:
            return os.path.getsize(os.path.join(self.path, DATA_FILE))
        except OSError:
            return 0

    def size_in_use(self) -> int:
        """Bytes of the pages the databases occupy, meta pages included (etcd's
        dbSizeInUse: the file less its free pages)."""
        psize = self.env.stat()["psize"]
        with self.env.begin() as txn:
            pages = 2
            for st in [self.env.stat()] + [txn.stat(db) for db in self.all_dbs()]:
                pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return pages * psize

    def close(self) -> None:
        if not self.readonly:
            self.env.sync(True)
        self.env.close()
