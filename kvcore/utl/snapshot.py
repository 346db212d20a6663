"""`kvcoreutl snapshot status`: etcdutl's figures for a snapshot file (etcd's or
kvcore's: both are etcd 3.5 bbolt databases)."""
from __future__ import annotations

from kvcore.bbolt import Reader
from kvcore.snapshot import schema as sc
from kvcore.storage.codec import walcodec


def status(path: str) -> dict:
    """etcdutl's snapshot status: CRC-32C over every bucket name, key and value in
    order; the last revision of the key bucket; the item count; the database size."""
    crc = walcodec.crc32c
    h = 0
    total = 0
    revision = 0
    with Reader(path) as r:
        for name in r.buckets():
            h = crc(name, h)
            is_key = name == b"key"
            for k, v in r.bucket(name):
                h = crc(v, crc(k, h))
                if is_key:
                    revision = sc.parse_rev(k)[0]
                total += 1
        size = r.size
    return {"hash": h, "revision": revision, "totalKey": total, "totalSize": size}
