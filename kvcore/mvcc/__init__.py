"""MVCC: revision index, key-value store."""
