"""``python -m bench.failover``: the leader-failover probe (bench/probes/failover.py)
under the name the performance issue and the README give it."""
import sys

from bench.probes.failover import main

if __name__ == "__main__":
    sys.exit(main())
