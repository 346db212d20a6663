"""Plain-Python twin of ext/proposer.pyx (same entry bytes, same behaviour)."""
import struct

_HDR = struct.Struct("<QB")


class Proposer:
    def __init__(self, loop, member_id, now_ms, on_batch):
        self._pending = []
        self._waiters = {}
        self._next_id = ((member_id & 0xFFFF) << 48) | ((now_ms & 0xFFFFFFFFFF) << 8)
        self._loop = loop
        self._on_batch = on_batch
        self._scheduled = False

    def propose(self, op, request):
        self._next_id = (self._next_id + 1) & 0xFFFFFFFFFFFFFFFF
        rid = self._next_id
        fut = self._loop.create_future()
        self._waiters[rid] = fut
        self._pending.append(_HDR.pack(rid, op) + request)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._fire)
        return fut

    def _fire(self):
        self._scheduled = False
        if self._pending:
            self._on_batch()

    def take(self):
        out, self._pending = self._pending, []
        return out

    def has_pending(self):
        return bool(self._pending)

    def waiter(self, rid):
        return self._waiters.pop(rid, None)

    def fail_all(self, exc):
        waiters, self._waiters = self._waiters, {}
        self._pending = []
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    def __len__(self):
        return len(self._waiters)


def decode_entry_data(data):
    if len(data) < _HDR.size:
        raise ValueError("short proposal")
    rid, op = _HDR.unpack_from(data)
    return rid, op, data[_HDR.size:]
