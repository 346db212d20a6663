"""The member's configuration: see kvcore/config (flag table, value parsing, YAML
layout, validation). Kept so ``from kvcore.server import config`` keeps working."""
from kvcore.config import (DEFAULT_QUOTA, FLAGS, Config, ConfigError, Flag,  # noqa: F401
                           parse, usage)
