"""Command-line plumbing shared by the entry scripts in scripts/.

Every script takes an experiment file, an optional results folder, `--force` and `--set KEY=VALUE`
overrides, and turns a bad experiment or a missing input into one error line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import yaml

from bertprune.config import ConfigError, ExperimentConfig, load_config
from bertprune.experiment import DEFAULT_RESULTS_ROOT, ExperimentPaths

EXIT_BAD_INPUT = 2


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--experiment", required=True, help="experiment YAML file, e.g. experiments/default.yaml")
    result.add_argument("--results-dir", default=str(DEFAULT_RESULTS_ROOT), help="root folder of results (default: results)")
    result.add_argument("--force", action="store_true", help="run the stage even if its outputs are up to date")
    result.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set prune.constraint=0.5 (VALUE is parsed as YAML)",
    )
    result.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return result


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. prune.constraint=0.5")
        overrides[key] = yaml.safe_load(value)
    return overrides


def run(description: str, stage: Callable[[ExperimentConfig, ExperimentPaths, bool], object]) -> None:
    """Parse the command line, load the experiment and run one stage; exit 2 on bad input."""
    arguments = parser(description).parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(arguments.experiment, parse_overrides(arguments.set))
        stage(config, ExperimentPaths(config, arguments.results_dir), arguments.force)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
