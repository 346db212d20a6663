"""Worker <-> core IPC: batched frames over a Unix socket (one write per batch)."""
