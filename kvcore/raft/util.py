"""Small helpers shared by the log, storage and message code."""
from __future__ import annotations

from .codec import ENTRY_OVERHEAD

NO_LIMIT = (1 << 63) - 1


def limit_size(ents: list, max_size: int) -> list:
    """Return the longest prefix of ``ents`` whose encoded size stays within ``max_size``,
    but always at least one entry."""
    if max_size >= NO_LIMIT or len(ents) <= 1:
        return ents
    size = ENTRY_OVERHEAD + len(ents[0].data)
    for i in range(1, len(ents)):
        size += ENTRY_OVERHEAD + len(ents[i].data)
        if size > max_size:
            return ents[:i]
    return ents
