"""Exit codes of kvcore-bench and the one way it prints an error (leaf module: imports
nothing from the package, so every command module can use it)."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_RUN, EXIT_USAGE, EXIT_AUTH, EXIT_SERVER, EXIT_ALL_FAILED = 0, 1, 2, 3, 4, 5


def err(msg: str) -> None:
    print(f"kvcore-bench: error: {msg}", file=sys.stderr)
