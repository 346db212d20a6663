"""Durable storage: the write-ahead log (wal.py), snapshots and the LMDB backend."""
