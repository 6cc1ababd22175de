"""Write expected_results/ files: the paper experiments' from the table below, or one from our own run.

    python scripts/make_expected_results.py                       # expected_results/paper/*.yaml
    python scripts/make_expected_results.py --measured default    # expected_results/default.yaml

Paper experiments get the dense metric, and, where the table has a number at the experiment's
constraint, the pruned metric and the metric drop. An experiment without a published number at
its constraint (DistilBERT at 0.6, BERT-base QNLI and SQuAD 1.1 at 0.6) gets only the dense row;
`make compare` still runs its structural checks (kept MACs, unpruned outputs, sanity bounds).

`--measured` turns a seed sweep of our own (results/<experiment>/sweep/sweep.json, at least three
seeds at the experiment's constraint) into expected results: the mean over seeds, a tolerance
from their spread, and the machine, date and seeds of the sweep. Run it again after changing the
table or the tolerances.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import statistics
from pathlib import Path

import yaml

from bertprune.config import load_config
from bertprune.expected import CurvePoint, ExpectedResults, Quantity, Source, parse_expected, to_yaml_data
from bertprune.provenance import atomic_write_text

logger = logging.getLogger("make_expected_results")

REPOSITORY = Path(__file__).resolve().parents[1]

# The method's seed-to-seed spread is about 0.5 to 1.5 points of the task metric.
TOLERANCE_POINTS = 1.5
SEED_SPREAD_NOTE = "tolerance: the method's seed-to-seed spread of 0.5 to 1.5 points"

# Our measured expectations: seeds a sweep needs, and the smallest tolerance, since three seeds
# can agree more closely than another machine's floating-point reductions let a rerun agree.
MIN_SEEDS = 3
MIN_TOLERANCE_POINTS = 0.5
SPREAD_NOTE = "tolerance: max(2 std, largest distance from the mean) over seeds, at least 0.5 points"

# Dev-set metric of an independent rerun of the authors' code (WoosukKwon/retraining-free-pruning),
# 2048 calibration samples: task -> (dense, {constraint: [value per seed]}). BERT-base ran seeds
# 0 and 1 at c = 0.5 and one unstated seed at 0.7 and 0.6; a missing constraint has no number.
BERT_BASE = {
    "mnli": (84.53, {0.7: [83.04], 0.6: [82.25], 0.5: [80.86, 80.88]}),
    "qqp": (91.00, {0.7: [90.73], 0.6: [90.40], 0.5: [89.52, 89.49]}),
    "qnli": (91.41, {0.7: [90.76], 0.5: [88.94, 87.63]}),
    "sst2": (93.58, {0.7: [93.35], 0.6: [92.32], 0.5: [91.40, 91.06]}),
    "stsb": (88.60, {0.7: [88.34], 0.6: [87.89], 0.5: [86.90, 87.04]}),
    "mrpc": (86.27, {0.7: [86.76], 0.6: [84.31], 0.5: [83.33, 82.35]}),
    "squad": (88.48, {0.7: [87.67], 0.5: [81.87, 83.11]}),
    "squad_v2": (76.83, {0.7: [76.04], 0.6: [73.76], 0.5: [68.24, 66.95]}),
}
# DistilBERT, listed beside the rerun table with dense, c = 0.7 and c = 0.5 only.
DISTILBERT = {
    "mnli": (82.11, {0.7: [81.76], 0.5: [77.81]}),
    "qqp": (89.99, {0.7: [89.71], 0.5: [85.22]}),
    "qnli": (88.56, {0.7: [88.45], 0.5: [86.88]}),
    "sst2": (91.40, {0.7: [90.83], 0.5: [89.11]}),
    "stsb": (86.12, {0.7: [86.07], 0.5: [85.07]}),
    "mrpc": (84.80, {0.7: [84.56], 0.5: [84.07]}),
    "squad": (85.73, {0.7: [84.64], 0.5: [80.97]}),
    "squad_v2": (68.84, {0.7: [65.72], 0.5: [56.24]}),
}
TABLES = {"bert-base": BERT_BASE, "distilbert": DISTILBERT}
SOURCES = {
    "bert-base": Source(
        kind="rerun",
        reference="independent rerun of the authors' code (WoosukKwon/retraining-free-pruning), BERT-base, "
        "2048 calibration samples, dev set",
    ),
    # NOTE: the table of reproduction targets lists these numbers without saying whether they
    # come from the rerun or from the paper's figures.
    "distilbert": Source(
        kind="rerun",
        reference="reproduction targets for DistilBERT listed with the independent rerun of the authors' code, "
        "2048 calibration samples, dev set",
    ),
}
PRIMARY_METRICS = {"stsb": "spearman", "squad": "f1", "squad_v2": "f1"}


def paper_expected(family: str, task: str, constraint: float, checkpoint: str) -> ExpectedResults:
    """Return the expected results of experiments/paper/<family>-<task>-c<constraint>.yaml."""
    dense, pruned_by_constraint = TABLES[family][task]
    source = SOURCES[family]
    source_name = "rerun"
    quantities = {
        "dense.metric.value": Quantity(
            value=dense,
            direction="within",
            absolute_tolerance=TOLERANCE_POINTS,
            source=source_name,
            note=(
                f"the authors' fine-tuned checkpoint is not downloadable; {checkpoint} substitutes for it "
                "and may score differently"
            ),
        )
    }
    seeds = pruned_by_constraint.get(constraint)
    if seeds is not None:
        pruned = round(statistics.mean(seeds), 3)
        seed_note = ""
        if len(seeds) > 1:
            seed_note = f"mean of seeds 0 and 1 ({', '.join(f'{value:.2f}' for value in seeds)}); "
        quantities["pruned.metric.value"] = Quantity(
            value=pruned,
            direction="within",
            absolute_tolerance=TOLERANCE_POINTS,
            source=source_name,
            note=seed_note + SEED_SPREAD_NOTE,
        )
        quantities["metric_drop"] = Quantity(
            value=round(dense - pruned, 3),
            direction="at_most",
            absolute_tolerance=TOLERANCE_POINTS,
            source=source_name,
            note="dense minus pruned of the same source; " + SEED_SPREAD_NOTE,
        )
    curve = [CurvePoint(constraint=1.0, value=dense, source=source_name)]
    curve += [
        CurvePoint(constraint=point, value=round(statistics.mean(values), 3), source=source_name)
        for point, values in sorted(pruned_by_constraint.items(), reverse=True)
    ]
    return ExpectedResults(
        experiment=f"paper/{family}-{task}-c{constraint}",
        constraint=constraint,
        metric=PRIMARY_METRICS.get(task, "accuracy"),
        sources={source_name: source},
        quantities=quantities,
        curve=curve,
    )


def paper_experiments(folder: Path) -> list[tuple[str, str, float, str]]:
    """Return (family, task, constraint, checkpoint) of every experiment file in experiments/paper/."""
    found = []
    for path in sorted(folder.glob("*.yaml")):
        stem = path.stem
        family = next((name for name in TABLES if stem.startswith(name + "-")), None)
        if family is None:
            raise ValueError(f"{path}: its name does not start with a known model family ({', '.join(TABLES)})")
        task, _, constraint = stem[len(family) + 1 :].rpartition("-c")
        if task not in TABLES[family]:
            raise ValueError(f"{path}: no published numbers for task {task!r} of {family}")
        checkpoint = yaml.safe_load(path.read_text())["model"]["source"]
        found.append((family, task, float(constraint), checkpoint))
    return found


def seed_tolerance(values: list[float]) -> float:
    """Return the tolerance of a measured quantity from its values over seeds.

    The larger of twice the standard deviation and the largest distance from the mean, rounded up
    to 0.1 point, and at least MIN_TOLERANCE_POINTS.
    """
    mean = statistics.mean(values)
    spread = max(2 * statistics.stdev(values), max(abs(value - mean) for value in values))
    return max(MIN_TOLERANCE_POINTS, math.ceil(round(spread * 10, 6)) / 10)


def measured_expected(sweep: dict, constraint: float, measured_on: datetime.date) -> ExpectedResults:
    """Return expected results from a sweep of our own: the mean over seeds at the experiment's constraint.

    Each tolerance comes from the spread over seeds (`seed_tolerance`); the sweep needs at least
    MIN_SEEDS seeds at the constraint.
    """
    name, machine = sweep["experiment"], sweep["provenance"]["machine"]
    points = [point for point in sweep["points"] if point["constraint"] == constraint]
    seeds = sorted(point["seed"] for point in points)
    if len(seeds) < MIN_SEEDS:
        raise ValueError(
            f"the sweep of {name} has {len(seeds)} seed(s) at constraint {constraint:g}; at least {MIN_SEEDS} "
            f"are needed: {sweep_command(name, [constraint])}"
        )
    if not sweep.get("finetune_each_seed"):
        logger.warning("the sweep of %s fine-tuned one dense model: the spread covers the calibration sample only", name)

    command = sweep_command(name, sweep["constraints"], seeds)
    source = Source(
        kind="measurement",
        reference=f"{command} (sweep.json, git {sweep['provenance']['git_commit'][:12]})",
        seeds=seeds,
        machine=f"{machine['platform']}, {machine['cpus']} CPUs",
        date=measured_on.isoformat(),
        command=command,
    )
    quantities = {}
    for path, field, direction in (
        ("dense.metric.value", "dense_metric", "within"),
        ("pruned.metric.value", "pruned_metric", "within"),
        ("metric_drop", "metric_drop", "at_most"),
    ):
        values = [point[field] for point in points]
        quantities[path] = Quantity(
            value=round(statistics.mean(values), 3),
            direction=direction,
            absolute_tolerance=seed_tolerance(values),
            source="ours",
            note=f"mean over seeds {', '.join(map(str, seeds))} ({', '.join(f'{value:.2f}' for value in values)}); "
            + SPREAD_NOTE,
        )
    curve = [CurvePoint(constraint=1.0, value=round(sweep["dense_metric"]["mean"], 3), source="ours")]
    curve += [
        CurvePoint(constraint=group["constraint"], value=round(group["pruned_metric"]["mean"], 3), source="ours")
        for group in sorted(sweep["by_constraint"], key=lambda group: -group["constraint"])
    ]
    return ExpectedResults(
        experiment=name,
        constraint=constraint,
        metric=points[0]["metric_name"],
        sources={"ours": source},
        quantities=quantities,
        curve=curve,
    )


def sweep_command(name: str, constraints: list[float], seeds: list[int] | None = None) -> str:
    """Return the sweep command line that measures `constraints` over `seeds` (by default MIN_SEEDS seeds)."""
    constraint_list = " ".join(f"{constraint:g}" for constraint in constraints)
    seed_list = " ".join(map(str, seeds or range(MIN_SEEDS)))
    return (
        f"python scripts/sweep.py --experiment experiments/{name}.yaml --constraints {constraint_list} "
        f"--seeds {seed_list} --finetune-each-seed"
    )


def render(expected: ExpectedResults, header: str) -> str:
    """Return the YAML text of expected results, validated by the same parser that compare uses."""
    data = to_yaml_data(expected)
    parse_expected(data)
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


PAPER_HEADER = "# Written by scripts/make_expected_results.py from its table of reproduction targets.\n"
MEASURED_HEADER = "# Written by scripts/make_expected_results.py --measured from results/{name}/sweep/sweep.json.\n"


def write_paper(root: Path) -> int:
    experiments = paper_experiments(REPOSITORY / "experiments" / "paper")
    for family, task, constraint, checkpoint in experiments:
        expected = paper_expected(family, task, constraint, checkpoint)
        atomic_write_text(root / f"{expected.experiment}.yaml", render(expected, PAPER_HEADER))
    return len(experiments)


def write_measured(root: Path, results: Path, name: str) -> Path:
    sweep_path = results / name / "sweep" / "sweep.json"
    experiment_file = REPOSITORY / "experiments" / f"{name}.yaml"
    constraint = load_config(experiment_file).prune.constraint
    if not sweep_path.is_file():
        raise FileNotFoundError(f"{sweep_path} not found; run `{sweep_command(name, [constraint])}` first")
    sweep = json.loads(sweep_path.read_text())
    measured_on = datetime.datetime.fromtimestamp(sweep_path.stat().st_mtime, tz=datetime.timezone.utc).date()
    path = root / f"{name}.yaml"
    atomic_write_text(path, render(measured_expected(sweep, constraint, measured_on), MEASURED_HEADER.format(name=name)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--measured",
        metavar="EXPERIMENT",
        help="write expected_results/EXPERIMENT.yaml from the seed sweep in results/EXPERIMENT/sweep/sweep.json",
    )
    parser.add_argument("--results-dir", default="results", help="root folder of results (default: results)")
    parser.add_argument(
        "--output-dir", default=str(REPOSITORY / "expected_results"), help="root folder of expected results"
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = Path(arguments.output_dir)
    if arguments.measured:
        logger.info("wrote %s", write_measured(root, Path(arguments.results_dir), arguments.measured))
    else:
        logger.info("wrote %d paper experiments to %s", write_paper(root), root / "paper")


if __name__ == "__main__":
    main()
