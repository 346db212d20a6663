"""Whether a worker may answer a linearizable read from its own LMDB view at once.

A member that is the leader and the only voter is its own quorum: Raft answers its
ReadIndex with the commit index without asking anyone (etcd does the same), so the
round trip a worker makes to the core for it only learns "everything committed is
applied". The core keeps that answer in one byte of shared memory instead: 1 while
this member leads a one-voter configuration and has applied everything committed
when it became so (every later write is applied before it is acknowledged), 0 as
soon as leadership or the configuration changes. A worker that reads 1 serves the
read from a read transaction opened after that check; otherwise it asks the core.
"""
from __future__ import annotations

import mmap
import os


class ReadState:
    def __init__(self, fd: int = -1, writable: bool = True):
        if fd < 0:
            fd = os.memfd_create("kvcore-read-state", os.MFD_CLOEXEC)
            os.ftruncate(fd, mmap.PAGESIZE)
        self.fd = fd
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        self._mm = mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, prot)

    @classmethod
    def attach(cls, fd: int) -> "ReadState":
        """A worker's read-only view of the core's state."""
        return cls(fd, writable=False)

    def set_local(self, on: bool) -> None:
        self._mm[0] = 1 if on else 0

    def local(self) -> bool:
        return self._mm[0] == 1

    # Byte 1: auth is enabled, so every Range needs the core's permission check.
    def set_auth(self, on: bool) -> None:
        self._mm[1] = 1 if on else 0

    def auth(self) -> bool:
        return self._mm[1] == 1

    # Byte 2: this member knows a leader (etcd's s.Leader() != None), for the calls
    # that require one (kvcore/worker/require_leader.py).
    def set_leader(self, known: bool) -> None:
        self._mm[2] = 1 if known else 0

    def has_leader(self) -> bool:
        return self._mm[2] == 1
