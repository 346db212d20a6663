"""Entry point of a worker process: ``python -m kvcore.worker <json args>``."""
from kvcore.worker.process import main

main()
