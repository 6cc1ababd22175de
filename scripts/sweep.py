"""Prune and evaluate one experiment over several constraints and seeds, then summarize and plot.

    python scripts/sweep.py --experiment experiments/default.yaml --constraints 0.5 0.6 0.7 --seeds 0 1 2

Results go to results/<experiment>/sweep/c<constraint>-s<seed>/ (and, with --finetune-each-seed,
one fine-tuned dense model per seed to results/<experiment>/sweep/dense-s<seed>/), the summary to
results/<experiment>/sweep/sweep.json with metric_vs_macs.png (and throughput.png when the
points have MLPerf summaries, see --mlperf).
"""

import logging
import sys

from bertprune.cli import EXIT_BAD_INPUT, parse_overrides, parser
from bertprune.config import ConfigError
from bertprune.sweep import default_stages, run_sweep


def main() -> None:
    arguments_parser = parser(__doc__.split("\n\n")[0])
    arguments_parser.add_argument(
        "--constraints",
        type=float,
        nargs="+",
        default=[0.5, 0.6, 0.7],
        help="fractions of encoder MACs kept (default: 0.5 0.6 0.7)",
    )
    arguments_parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the calibration sample (default: 0 1 2)"
    )
    arguments_parser.add_argument("--mlperf", action="store_true", help="also run the MLPerf stage for every point")
    arguments_parser.add_argument(
        "--finetune-each-seed",
        action="store_true",
        help="fine-tune one dense model per seed (in sweep/dense-s<seed>/), so the spread covers fine-tuning",
    )
    arguments_parser.add_argument(
        "--expected-dir",
        default="expected_results",
        help="root folder of expected results, for the plot's expected curve (default: expected_results)",
    )
    arguments = arguments_parser.parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_sweep(
            arguments.experiment,
            arguments.constraints,
            arguments.seeds,
            results_root=arguments.results_dir,
            overrides=parse_overrides(arguments.set),
            force=arguments.force,
            expected_root=arguments.expected_dir,
            stages=default_stages(with_mlperf=arguments.mlperf),
            finetune_each_seed=arguments.finetune_each_seed,
        )
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
