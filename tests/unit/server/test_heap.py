"""kvcore/heap.py: with its malloc settings a freed 1 MiB buffer is reused, so making
another one does not fault in fresh zeroed pages (glibc's defaults do)."""
import subprocess
import sys

PROGRAM = r"""
import resource, sys
if sys.argv[1] == "tuned":
    from kvcore.heap import keep_freed_buffers
    assert keep_freed_buffers()
src = bytearray(1 << 20)
for _ in range(5):
    bytes(src[5:])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    bytes(src[5:])   # a 1 MiB bytearray slice, then a 1 MiB bytes, both freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True,
                         text=True, check=True, timeout=60)
    return int(out.stdout)


def test_freed_large_buffers_are_reused_without_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    # glibc's defaults: at least one 256-page buffer faulted in per round.
    assert default > 100 * 200, default
    assert tuned < 1000, tuned


RANGE = r"""
import resource, sys
from kvcore import heap
assert heap.keep_freed_buffers(int(sys.argv[1]))
def one_range():   # what a worker holds for a 10,000 x 1 KiB Range, then frees
    values = [bytes(1100) for _ in range(10_000)]
    out = b"".join(values)
    return len(out)
for _ in range(3):
    one_range()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_range()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_worker_keeps_a_large_ranges_buffers():
    def faults(trim: int) -> int:
        out = subprocess.run([sys.executable, "-c", RANGE, str(trim)], capture_output=True,
                             text=True, check=True, timeout=60)
        return int(out.stdout)
    from kvcore.heap import TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD
    # ~21 MiB freed per range: given back (and faulted in again) above 16 MiB of trim
    assert faults(TRIM_THRESHOLD) > 10 * 2000
    assert faults(WORKER_TRIM_THRESHOLD) < 1000


def test_keep_freed_buffers_is_idempotent():
    from kvcore.heap import keep_freed_buffers
    assert keep_freed_buffers() and keep_freed_buffers()


FREEZE = r"""
import gc, weakref
from kvcore.heap import freeze_startup_objects

class Node:
    pass

kept = Node(); kept.me = kept               # alive at startup: frozen, never scanned
dead = Node(); dead.me = dead; dead = None  # startup garbage: collected before the freeze
freeze_startup_objects()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert gc.is_tracked(kept) and not gc.get_objects(generation=2).count(kept)
later = Node(); later.me = later            # a cycle made after the freeze
ref = weakref.ref(later)
later = None
gc.collect()
assert ref() is None                        # still collected
print("ok")
"""


def test_startup_objects_frozen_and_later_cycles_still_collected():
    out = subprocess.run([sys.executable, "-c", FREEZE], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
