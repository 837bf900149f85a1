"""``python -m normcore.lab.experiments.data_parallel``: the per-worker batch sweep (sweep.py)."""

import sys

from normcore.lab.experiments.data_parallel.sweep import main

if __name__ == "__main__":
    sys.exit(main())
