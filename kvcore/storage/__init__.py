"""Durable storage: the write-ahead log (wal.py), snapshots and the LMDB backend."""

import os

PRIVATE_DIR_MODE = 0o700   # etcd's fileutil.PrivateDirMode


def private_dirs(path: str) -> None:
    """Create ``path`` and any missing parent with mode 0700, as etcd's
    fileutil.TouchDirAll (Go's MkdirAll applies the mode at every level; Python's
    makedirs only at the last)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        private_dirs(parent)
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
