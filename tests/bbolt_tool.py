"""The `bbolt` test tool (check, buckets), built from Debian's bbolt source by
tools/bbolt/build.sh (cached after the first build)."""
from __future__ import annotations

import functools
import os
import subprocess

_BUILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "tools", "bbolt", "build.sh")


@functools.lru_cache(maxsize=1)
def path() -> str:
    return subprocess.run([_BUILD], check=True, capture_output=True, text=True,
                          timeout=300).stdout.strip()


def run(cmd: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run([path(), cmd, db], capture_output=True, text=True, timeout=120)
