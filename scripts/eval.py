"""Evaluate the dense and the pruned model on the dev set and write metrics.json."""

from bertprune.cli import run
from bertprune.evaluate import run_eval

if __name__ == "__main__":
    run(__doc__, run_eval)
