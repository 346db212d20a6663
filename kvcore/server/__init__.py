"""The kvcore server: configuration, the core process, the KV/cluster services."""
