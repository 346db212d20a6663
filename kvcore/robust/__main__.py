import sys

from kvcore.robust.cli import main

sys.exit(main())
