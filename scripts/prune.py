"""Prune the experiment's task model to its MAC constraint and save the physically smaller model."""

from bertprune.cli import run
from bertprune.pipeline import run_prune

if __name__ == "__main__":
    run(__doc__, run_prune)
