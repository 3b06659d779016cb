"""One worker process: `python -m peers.worker <adapter>` (env `PB_MODE`, `PB_TARGET`...)."""

import importlib
import logging
import sys

from peers import hits

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    adapter = importlib.import_module(f"peers.{sys.argv[1]}_peer")
    hits.start_reporter()
    adapter.worker_main()
