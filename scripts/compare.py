"""Check an experiment's outputs against expected_results/<experiment>.yaml and against each other.

Prints one row per check, writes compare.md and compare.json beside the outputs, and exits 0 only
when no check failed (1 when one did, 2 for an invalid experiment file).
"""

import sys

from bertprune.cli import run
from bertprune.compare import run_compare

EXIT_CHECK_FAILED = 1


def compare_stage(config, paths, force):
    record = run_compare(config, paths, force)
    sys.exit(0 if record["passed"] else EXIT_CHECK_FAILED)


if __name__ == "__main__":
    run(__doc__, compare_stage)
