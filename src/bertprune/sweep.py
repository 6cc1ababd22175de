"""Sweeps: one experiment pruned at several constraints and seeds, with a summary and plots.

The dense model is fine-tuned once (when the experiment fine-tunes) in the experiment's own
folder. Each point (constraint c, seed s) is the experiment with `prune.constraint`, `seed` and
`name` overridden, so it lives in `results/<experiment>/sweep/c<c>-s<s>/` with the usual files,
and prunes the fine-tuned folder directly. A point is pruned again when the fine-tuned model
changes, because the prune stage compares the dense model's hash with the one in its record.

With `finetune_each_seed`, seed s also fine-tunes its own dense model in
`results/<experiment>/sweep/dense-s<s>/` (the experiment's own seed reuses the experiment's
fine-tuned model), so the spread over seeds covers fine-tuning as well as the calibration sample.

`sweep.json` contains every point's numbers and the per-constraint mean and spread over seeds;
`metric_vs_macs.png` plots the task metric against the fraction of encoder MACs kept, with the
expected curve of `expected_results/<experiment>.yaml` when it has one; `throughput.png` plots
LoadGen samples per second of the dense and the pruned models against the same axis, with the
MAC-ideal throughput, for points with an MLPerf summary.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bertprune.compare_inputs import read_mlperf_summary
from bertprune.config import ConfigError, ExperimentConfig, load_config
from bertprune.experiment import ExperimentPaths, finetune_key
from bertprune.expected import ExpectedResults, expected_results_path, load_expected
from bertprune.provenance import atomic_write, atomic_write_json, provenance

logger = logging.getLogger(__name__)

SWEEP_FORMAT = 1
SWEEP_FOLDER = "sweep"
METRIC_PLOT = "metric_vs_macs.png"
THROUGHPUT_PLOT = "throughput.png"

Stage = Callable[[ExperimentConfig, ExperimentPaths, bool], Any]


@dataclass
class SweepStages:
    """The stage functions a sweep runs; tests replace them with fast fakes."""

    finetune: Stage
    prune: Stage
    evaluate: Stage
    mlperf: Stage | None = None


def default_stages(with_mlperf: bool) -> SweepStages:
    from bertprune.evaluate import run_eval
    from bertprune.pipeline import run_finetune, run_prune

    mlperf = None
    if with_mlperf:
        from bertprune.mlperf.run import run_mlperf

        mlperf = run_mlperf
    return SweepStages(finetune=run_finetune, prune=run_prune, evaluate=run_eval, mlperf=mlperf)


def point_name(experiment: str, constraint: float, seed: int) -> str:
    return f"{experiment}/{SWEEP_FOLDER}/c{constraint:g}-s{seed}"


def dense_name(experiment: str, seed: int) -> str:
    return f"{experiment}/{SWEEP_FOLDER}/dense-s{seed}"


def point_overrides(base: ExperimentConfig, dense_paths: ExperimentPaths, constraint: float, seed: int) -> dict[str, Any]:
    """Return the config overrides that turn the experiment into one sweep point.

    `dense_paths` is the experiment whose fine-tuned model the point prunes (when the experiment
    fine-tunes).
    """
    overrides: dict[str, Any] = {
        "name": point_name(base.name, constraint, seed),
        "prune.constraint": constraint,
        "seed": seed,
    }
    if base.finetune.enabled:
        # The point prunes a fine-tuned model of the sweep instead of fine-tuning its own.
        overrides["finetune.enabled"] = False
        overrides["model.source"] = str(dense_paths.finetuned_model.resolve())
        overrides["model.revision"] = None
    return overrides


def _point_summary(constraint: float, seed: int, paths: ExperimentPaths, metrics: dict[str, Any]) -> dict[str, Any]:
    point = {
        "constraint": constraint,
        "seed": seed,
        "results": str(paths.root),
        "metric_name": metrics["dense"]["metric"]["name"],
        "dense_metric": metrics["dense"]["metric"]["value"],
        "pruned_metric": metrics["pruned"]["metric"]["value"],
        "metric_drop": metrics["metric_drop"],
        "kept_mac_fraction": metrics["kept_mac_fraction"],
        "kept_parameter_fraction": metrics["kept_parameter_fraction"],
        "masked_vs_sliced_max_abs_diff": metrics["sanity"]["masked_vs_sliced_max_abs_diff"],
        "pruning_seconds": sum(metrics["pruning_time_seconds"].values()),
    }
    summary_path = paths.mlperf / "summary.json"
    if summary_path.is_file():
        summary = read_mlperf_summary(summary_path)
        point["mlperf"] = {
            "profile": summary.profile,
            "samples_per_second": {name: variant.samples_per_second for name, variant in summary.variants.items()},
            "throughput_ratio": summary.throughput_ratio,
            "mac_ideal_ratio": summary.mac_ideal_ratio,
        }
    return point


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarize_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return, per constraint, the mean and spread over seeds of the pruned metric, drop and kept MACs."""
    summaries = []
    for constraint in sorted({point["constraint"] for point in points}):
        group = [point for point in points if point["constraint"] == constraint]
        summaries.append(
            {
                "constraint": constraint,
                "seeds": [point["seed"] for point in group],
                "pruned_metric": _spread([point["pruned_metric"] for point in group]),
                "metric_drop": _spread([point["metric_drop"] for point in group]),
                "kept_mac_fraction": _spread([point["kept_mac_fraction"] for point in group]),
            }
        )
    return summaries


def _save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG through a temporary file and a rename."""
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight"))


def plot_metric_vs_macs(record: dict[str, Any], expected: ExpectedResults | None, path: Path) -> None:
    """Plot the task metric against the fraction of encoder MACs kept.

    The plot shows the dense model, each seed's pruned model, the mean and standard deviation over
    seeds per constraint, and the expected curve (against its constraints) when there is one.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points, by_constraint = record["points"], record["by_constraint"]
    metric_name = points[0]["metric_name"]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    axes.scatter(
        [point["kept_mac_fraction"] for point in points],
        [point["pruned_metric"] for point in points],
        s=12,
        alpha=0.4,
        color="tab:blue",
        label="pruned, each seed",
    )
    axes.errorbar(
        [group["kept_mac_fraction"]["mean"] for group in by_constraint],
        [group["pruned_metric"]["mean"] for group in by_constraint],
        yerr=[group["pruned_metric"]["std"] for group in by_constraint],
        fmt="o-",
        capsize=4,
        color="tab:blue",
        label="pruned, mean ± std over seeds",
    )
    dense = record["dense_metric"]
    axes.errorbar([1.0], [dense["mean"]], yerr=[dense["std"]], fmt="s", capsize=4, color="black", label="dense")
    if expected is not None and expected.curve:
        curve = sorted(expected.curve, key=lambda point: point.constraint)
        kinds = sorted({expected.sources[point.source].kind for point in curve})
        axes.plot(
            [point.constraint for point in curve],
            [point.value for point in curve],
            "x--",
            color="tab:orange",
            label=f"expected ({', '.join(kinds)}; x = constraint)",
        )
    axes.set_xlabel("fraction of dense encoder MACs kept")
    axes.set_ylabel(f"{metric_name} (dev set)")
    axes.set_title(record["experiment"])
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save_figure(figure, path)
    pyplot.close(figure)


def plot_throughput(points: list[dict[str, Any]], path: Path) -> bool:
    """Plot LoadGen samples per second against the fraction of encoder MACs kept.

    Per precision (fp32, and int8 when measured) the plot shows each seed's pruned model, the
    mean and standard deviation over seeds per constraint, the dense model's runs at 1.0, and the
    MAC-ideal throughput (dense divided by the fraction kept). Returns False, and writes nothing,
    when no point has an MLPerf summary.
    """
    measured = [point for point in points if point.get("mlperf")]
    if not measured:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    fractions = sorted({point["kept_mac_fraction"] for point in measured})
    speeds = [point["mlperf"]["samples_per_second"] for point in measured]
    for suffix, color in (("", "tab:blue"), ("-int8", "tab:green")):
        dense_variant, pruned_variant = f"dense{suffix}", f"pruned{suffix}"
        if not any(speed.get(pruned_variant) for speed in speeds):
            continue
        label = "int8" if suffix else "fp32"
        pruned = [(point["kept_mac_fraction"], speed[pruned_variant]) for point, speed in zip(measured, speeds) if speed.get(pruned_variant)]
        axes.scatter(*zip(*pruned), s=12, alpha=0.4, color=color, label=f"pruned {label}, each seed")

        groups = []
        for constraint in sorted({point["constraint"] for point in measured}):
            group = [point for point in measured if point["constraint"] == constraint and point["mlperf"]["samples_per_second"].get(pruned_variant)]
            if group:
                fraction = statistics.mean(point["kept_mac_fraction"] for point in group)
                groups.append((fraction, _spread([point["mlperf"]["samples_per_second"][pruned_variant] for point in group])))
        axes.errorbar(
            [fraction for fraction, _ in groups],
            [spread["mean"] for _, spread in groups],
            yerr=[spread["std"] for _, spread in groups],
            fmt="o-",
            capsize=4,
            color=color,
            label=f"pruned {label}, mean ± std over seeds",
        )

        dense = _spread([speed[dense_variant] for speed in speeds if speed.get(dense_variant)])
        axes.errorbar(
            [1.0], [dense["mean"]], yerr=[dense["std"]], fmt="s", capsize=4, color="black", markerfacecolor=color,
            label=f"dense {label}, mean ± std",
        )
        ideal_fractions = [*fractions, 1.0]
        axes.plot(
            ideal_fractions,
            [dense["mean"] / fraction for fraction in ideal_fractions],
            ":",
            color=color,
            label=f"MAC-ideal {label} (dense / fraction kept)",
        )
    axes.set_xlabel("fraction of dense encoder MACs kept")
    axes.set_ylabel("LoadGen Offline samples per second")
    axes.set_ylim(bottom=0)
    axes.set_title("dense vs pruned throughput")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    _save_figure(figure, path)
    pyplot.close(figure)
    return True


def _run_point(
    experiment_file: Path, overrides: dict[str, Any], results_root: Path, stages: SweepStages, force: bool
) -> tuple[ExperimentConfig, ExperimentPaths, dict[str, Any]]:
    config = load_config(experiment_file, overrides)
    paths = ExperimentPaths(config, results_root)
    stages.prune(config, paths, force)
    metrics = stages.evaluate(config, paths, force)
    if stages.mlperf is not None:
        stages.mlperf(config, paths, force)
    return config, paths, metrics


def run_sweep(
    experiment_file: str | Path,
    constraints: list[float],
    seeds: list[int],
    *,
    results_root: str | Path = "results",
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    expected_root: str | Path = "expected_results",
    stages: SweepStages | None = None,
    finetune_each_seed: bool = False,
) -> dict[str, Any]:
    """Fine-tune, prune and evaluate every (constraint, seed) point, and write sweep.json and the plots.

    The experiment is fine-tuned once, or once per seed with `finetune_each_seed`.
    """
    if not constraints or not seeds:
        raise ValueError("a sweep needs at least one constraint and one seed")
    experiment_file, results_root = Path(experiment_file), Path(results_root)
    stages = stages or default_stages(with_mlperf=False)
    overrides = dict(overrides or {})
    base = load_config(experiment_file, overrides)
    base_paths = ExperimentPaths(base, results_root)
    folder = base_paths.root / SWEEP_FOLDER

    unique_constraints, unique_seeds = sorted(set(constraints)), sorted(set(seeds))
    dense_models = _finetune_dense_models(
        experiment_file, base, results_root, overrides, unique_seeds, stages, force, finetune_each_seed
    )

    points = []
    for constraint in unique_constraints:
        for seed in unique_seeds:
            logger.info("sweep point: constraint %g, seed %d", constraint, seed)
            dense_paths, _ = dense_models[seed]
            point_settings = {**overrides, **point_overrides(base, dense_paths, constraint, seed)}
            _, paths, metrics = _run_point(experiment_file, point_settings, results_root, stages, force)
            points.append(_point_summary(constraint, seed, paths, metrics))

    record = {
        "format": SWEEP_FORMAT,
        "experiment": base.name,
        "constraints": unique_constraints,
        "seeds": unique_seeds,
        "finetune_each_seed": finetune_each_seed and base.finetune.enabled,
        "finetune_stage_keys": {str(seed): key for seed, (_, key) in dense_models.items()},
        "points": points,
        "by_constraint": summarize_points(points),
        # One dense value per seed: every constraint of a seed evaluates the same dense model.
        "dense_metric": _spread([point["dense_metric"] for point in points if point["constraint"] == unique_constraints[0]]),
        "plots": [],
        "provenance": provenance({}),
    }
    expected = _optional_expected(expected_results_path(base.name, expected_root))
    plot_metric_vs_macs(record, expected, folder / METRIC_PLOT)
    record["plots"].append(str(folder / METRIC_PLOT))
    if plot_throughput(points, folder / THROUGHPUT_PLOT):
        record["plots"].append(str(folder / THROUGHPUT_PLOT))
    atomic_write_json(folder / "sweep.json", record)
    logger.info("wrote %s and %s", folder / "sweep.json", ", ".join(record["plots"]))
    return record


def _finetune_dense_models(
    experiment_file: Path,
    base: ExperimentConfig,
    results_root: Path,
    overrides: dict[str, Any],
    seeds: list[int],
    stages: SweepStages,
    force: bool,
    finetune_each_seed: bool,
) -> dict[int, tuple[ExperimentPaths, str | None]]:
    """Fine-tune the dense models that the points prune, and return each seed's experiment paths and stage key."""
    base_paths = ExperimentPaths(base, results_root)
    if not base.finetune.enabled:
        return {seed: (base_paths, None) for seed in seeds}
    dense_models = {}
    for seed in seeds if finetune_each_seed else [base.seed]:
        config = base
        if seed != base.seed:
            config = load_config(experiment_file, {**overrides, "seed": seed, "name": dense_name(base.name, seed)})
        paths = ExperimentPaths(config, results_root)
        logger.info("sweep dense model: seed %d in %s", seed, paths.root)
        stages.finetune(config, paths, force)
        dense_models[seed] = (paths, finetune_key(config))
    if not finetune_each_seed:
        return {seed: dense_models[base.seed] for seed in seeds}
    return dense_models


def _optional_expected(path: Path) -> ExpectedResults | None:
    """Return the expected results for the plot's reference curve, or None (logged) when absent or invalid."""
    if not path.is_file():
        logger.info("%s not found: the plot has no expected curve", path)
        return None
    try:
        return load_expected(path)
    except ConfigError as error:
        logger.warning("the plot has no expected curve: %s", error)
        return None
