"""`make compare` on a tiny experiment's real outputs, and on doctored copies of them.

The outputs are made by the project's own functions on a tiny BERT: search, slicing,
save_pruned_model, the masked-vs-sliced check, export_onnx and measure_export. Only the LoadGen
logs are written as text in LoadGen's summary format, and the records (prune.json, metrics.json,
summary.json) are assembled in the format of the stages that write them, because running the
stages themselves takes tens of seconds.
"""

import copy
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import BertTokenizer

from bertprune.arch import get_adapter
from bertprune.compare import FAIL, PASS, SKIPPED, run_compare
from bertprune.config import ExperimentConfig, MlperfConfig, ModelConfig, PruneConfig, TaskConfig, validate
from bertprune.cost import MacCostModel
from bertprune.experiment import ExperimentPaths, eval_key, prune_key
from bertprune.expected import ExpectedResultsError, load_expected, parse_expected
from bertprune.export import export_onnx, measure_export
from bertprune.mlperf.qsl import SampleSet
from bertprune.mlperf.run import MlperfLayout, Variant, mlperf_key, onnx_file_hashes
from bertprune.models import kept_units, load_pruned_model, save_pruned_model
from bertprune.pipeline import masked_vs_sliced_difference
from bertprune.provenance import atomic_write_json, provenance, sha256_tree
from bertprune.search import search_masks
from bertprune.slicing import encoder_parameter_count, slice_model
from tiny import VOCAB_SIZE, padded_batches, tiny_bert

NAME = "tiny"
CONSTRAINT = 0.5
SEQ_LEN = 12.0
DENSE_METRIC, PRUNED_METRIC = 90.0, 88.5
SAMPLES_PER_SECOND = {"dense": 1000.0, "pruned": 1600.0}

LOADGEN_SUMMARY = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Offline
Mode     : PerformanceOnly
Samples per second: {samples_per_second}
Result is : {result}
  Min duration satisfied : {duration}
  Min queries satisfied : Yes
  Early stopping satisfied: Yes
"""

EXPECTED = {
    "format": 1,
    "experiment": NAME,
    "constraint": CONSTRAINT,
    "metric": "accuracy",
    "sources": {
        "ours": {
            "kind": "measurement",
            "reference": "tests/test_compare.py fixture",
            "machine": "test machine",
            "date": "2025-01-31",
            "seeds": [0],
        }
    },
    "quantities": {
        "dense.metric.value": {"value": 90.0, "direction": "within", "absolute_tolerance": 1.5, "source": "ours"},
        "pruned.metric.value": {"value": 88.0, "direction": "within", "absolute_tolerance": 1.5, "source": "ours"},
        "metric_drop": {"value": 1.5, "direction": "at_most", "absolute_tolerance": 1.0, "source": "ours"},
    },
}


def _tokenizer(folder: Path) -> BertTokenizer:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(special + [f"word{index}" for index in range(VOCAB_SIZE - len(special))]) + "\n")
    return BertTokenizer(str(vocab))


def _model_block(model, cost: MacCostModel, value: float) -> dict:
    adapter = get_adapter(model)
    heads, neurons = adapter.kept_counts()
    return {
        "metric": {"name": "accuracy", "value": value},
        "all_metrics": {"accuracy": value},
        "encoder_parameters": encoder_parameter_count(adapter),
        "encoder_macs": cost.encoder_macs(sum(heads), sum(neurons)),
        "heads_per_layer": heads,
        "neurons_per_layer": neurons,
        "eval_seconds": 0.1,
    }


def _write_loadgen_log(folder: Path, samples_per_second: float, result: str = "VALID") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = LOADGEN_SUMMARY.format(
        samples_per_second=samples_per_second, result=result, duration="Yes" if result == "VALID" else "No"
    )
    (folder / "mlperf_log_summary.txt").write_text(text)


def build_outputs(root: Path) -> tuple[ExperimentConfig, ExperimentPaths]:
    """Write the outputs of a tiny experiment below `root`: dense model, pruned model, records, ONNX, logs."""
    dense_folder = root / "dense-model"
    dense_folder.mkdir(parents=True)
    tokenizer = _tokenizer(root)
    dense = tiny_bert()
    dense.save_pretrained(dense_folder)
    tokenizer.save_pretrained(dense_folder)

    config = ExperimentConfig(
        name=NAME,
        model=ModelConfig(source=str(dense_folder)),
        task=TaskConfig(name="sst2", max_seq_length=20),
        prune=PruneConfig(constraint=CONSTRAINT),
        mlperf=MlperfConfig(profile="full"),
    )
    validate(config)
    paths = ExperimentPaths(config, root / "results")

    # Prune: search on random importances, tuned-looking scales, slicing.
    adapter = get_adapter(dense)
    shape = adapter.shape()
    cost = MacCostModel.for_shape(shape, SEQ_LEN)
    generator = torch.Generator().manual_seed(0)
    searched = search_masks(
        torch.rand(shape.num_layers, shape.num_heads, generator=generator),
        torch.rand(shape.num_layers, shape.intermediate_size, generator=generator),
        cost,
        CONSTRAINT,
    )
    head_mask = searched.head_mask * (0.5 + torch.rand(searched.head_mask.shape, generator=generator))
    neuron_mask = searched.neuron_mask * (0.5 + torch.rand(searched.neuron_mask.shape, generator=generator))
    sliced = copy.deepcopy(dense)
    slice_model(get_adapter(sliced), head_mask, neuron_mask)
    batches = [{key: value for key, value in batch.items() if key != "labels"} for batch in padded_batches(2, 4, 16)]
    difference = masked_vs_sliced_difference(dense, sliced, adapter, head_mask, neuron_mask, batches)
    paths.pruned_model.mkdir(parents=True)
    save_pruned_model(sliced, tokenizer, paths.pruned_model, kept_units(head_mask, neuron_mask))
    kept_heads, kept_neurons = get_adapter(sliced).kept_counts()
    record_provenance = provenance({"model": sha256_tree(dense_folder)})
    atomic_write_json(
        paths.prune_record,
        {
            "stage_key": prune_key(config),
            "constraint": CONSTRAINT,
            "seq_len": SEQ_LEN,
            "mac_per_head": cost.mac_per_head,
            "mac_per_neuron": cost.mac_per_neuron,
            "dense_encoder_macs": cost.dense_macs(),
            "budget_macs": searched.budget,
            "pruned_encoder_macs": cost.encoder_macs(sum(kept_heads), sum(kept_neurons)),
            "heads_per_layer": kept_heads,
            "neurons_per_layer": kept_neurons,
            "sanity": {"masked_vs_sliced_max_abs_diff": difference},
            "dense_model": str(dense_folder),
            "pruned_model": str(paths.pruned_model),
            "provenance": record_provenance,
        },
    )

    # Eval.
    dense_block, pruned_block = _model_block(dense, cost, DENSE_METRIC), _model_block(sliced, cost, PRUNED_METRIC)
    atomic_write_json(
        paths.metrics,
        {
            "format": 1,
            "stage_key": eval_key(config),
            "experiment": NAME,
            "task": "sst2",
            "constraint": CONSTRAINT,
            "seq_len": SEQ_LEN,
            "dense": dense_block,
            "pruned": pruned_block,
            "kept_mac_fraction": pruned_block["encoder_macs"] / dense_block["encoder_macs"],
            "kept_parameter_fraction": pruned_block["encoder_parameters"] / dense_block["encoder_parameters"],
            "metric_drop": DENSE_METRIC - PRUNED_METRIC,
            "sanity": {"masked_vs_sliced_max_abs_diff": difference},
            "provenance": provenance({"model": sha256_tree(dense_folder), "pruned_model": sha256_tree(paths.pruned_model)}),
        },
    )

    # MLPerf: real ONNX exports of the dense and the reloaded pruned model, LoadGen logs as text.
    layout = MlperfLayout(config, paths)
    inputs = {key: value.numpy() for key, value in batches[0].items()}
    samples = SampleSet(kind="classification", inputs=inputs)
    variants = {}
    for name, model in (("dense", dense), ("pruned", load_pruned_model(paths.pruned_model))):
        variant = Variant(name, False)
        path = export_onnx(model, layout.onnx_model(variant), task_kind="classification")
        report = measure_export(model, path, samples)
        _write_loadgen_log(layout.performance_dir(variant), SAMPLES_PER_SECOND[name])
        value = DENSE_METRIC if name == "dense" else PRUNED_METRIC
        variants[name] = {
            "model_name": layout.model_name(variant),
            "samples_per_second": SAMPLES_PER_SECOND[name],
            "result": "VALID",
            "metric": {"name": "accuracy", "loadgen_accuracy": value + 0.01, "eval": value, "difference": 0.01},
            "onnx": {**report.to_dict(), "sha256": onnx_file_hashes(path)},
        }
    atomic_write_json(
        layout.summary,
        {
            "format": 1,
            "stage_key": mlperf_key(config),
            "experiment": NAME,
            "system": config.mlperf.system_name,
            "settings": {"profile": config.mlperf.profile, "int8": False},
            "variants": variants,
            "throughput_ratio": {
                "pruned_over_dense": SAMPLES_PER_SECOND["pruned"] / SAMPLES_PER_SECOND["dense"],
                "ideal_from_macs": dense_block["encoder_macs"] / pruned_block["encoder_macs"],
            },
            "provenance": provenance({f"{name}/model.onnx": variants[name]["onnx"]["sha256"]["model.onnx"] for name in variants}),
        },
    )
    return config, paths


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-pristine")
    build_outputs(root)
    return root


@pytest.fixture
def experiment(pristine, tmp_path):
    """A fresh copy of the tiny experiment's outputs and its expected results: (config, paths, expected_root)."""
    root = tmp_path / "experiment"
    shutil.copytree(pristine, root)
    config = ExperimentConfig(
        name=NAME,
        # The records' stage keys hash the model source, which stays the pristine folder.
        model=ModelConfig(source=str(pristine / "dense-model")),
        task=TaskConfig(name="sst2", max_seq_length=20),
        prune=PruneConfig(constraint=CONSTRAINT),
        mlperf=MlperfConfig(profile="full"),
    )
    # The summary records the ONNX paths of the pristine folder; point them at the copy.
    summary_path = root / "results" / NAME / "mlperf" / "summary.json"
    summary_path.write_text(summary_path.read_text().replace(str(pristine), str(root)))
    expected_root = root / "expected_results"
    expected_root.mkdir()
    (expected_root / f"{NAME}.yaml").write_text(yaml.safe_dump(EXPECTED, sort_keys=False))
    return config, ExperimentPaths(config, root / "results"), expected_root


def rows_by_check(record: dict) -> dict[str, dict]:
    return {row["check"]: row for row in record["rows"]}


def failed_checks(record: dict) -> list[str]:
    return [row["check"] for row in record["rows"] if row["status"] == FAIL]


def test_compare_passes_on_real_outputs(experiment):
    config, paths, expected_root = experiment
    record = run_compare(config, paths, expected_root=expected_root)
    assert failed_checks(record) == []
    assert record["passed"] is True
    rows = rows_by_check(record)
    for check in ("dense.metric.value", "pruned.metric.value", "metric_drop", "kept MACs within constraint"):
        assert rows[check]["status"] == PASS
    assert rows["pruned PyTorch model smaller than dense"]["status"] == PASS
    assert rows["pruned ONNX smaller than dense"]["status"] == PASS
    assert rows["LoadGen result VALID (pruned)"]["status"] == PASS
    assert rows["throughput pruned / dense"]["value"] == pytest.approx(1.6)
    assert [row["check"] for row in record["rows"] if row["status"] == SKIPPED] == ["int8 variants"]


def test_compare_writes_markdown_and_json(experiment):
    config, paths, expected_root = experiment
    record = run_compare(config, paths, expected_root=expected_root)
    saved = json.loads((paths.root / "compare.json").read_text())
    assert saved["rows"] == record["rows"]
    assert saved["passed"] is True
    markdown = (paths.root / "compare.md").read_text()
    assert "| kept MACs within constraint" in markdown
    assert "compare tiny: PASS" in markdown


def test_unpruned_onnx_reported(experiment):
    config, paths, expected_root = experiment
    layout = MlperfLayout(config, paths)
    dense_onnx, pruned_onnx = layout.onnx_model(Variant("dense", False)), layout.onnx_model(Variant("pruned", False))
    for file in dense_onnx.parent.iterdir():
        shutil.copy(file, pruned_onnx.parent / file.name)
    record = run_compare(config, paths, expected_root=expected_root)
    row = rows_by_check(record)["pruned ONNX smaller than dense"]
    assert row["status"] == FAIL
    assert f"{pruned_onnx} is unpruned: it has as many parameters as the dense model's ONNX file" in row["detail"]
    assert rows_by_check(record)["ONNX file is the one LoadGen ran (pruned)"]["status"] == FAIL
    assert record["passed"] is False


@pytest.mark.parametrize("dense_format", ["hugging_face", "save_pruned_model"])
def test_unpruned_pytorch_reported(experiment, dense_format):
    config, paths, expected_root = experiment
    shutil.rmtree(paths.pruned_model)
    if dense_format == "hugging_face":
        shutil.copytree(Path(config.model.source), paths.pruned_model)
    else:
        dense = tiny_bert()
        shape = get_adapter(dense).shape()
        all_kept = kept_units(torch.ones(shape.num_layers, shape.num_heads), torch.ones(shape.num_layers, shape.intermediate_size))
        paths.pruned_model.mkdir()
        save_pruned_model(dense, _tokenizer(paths.root), paths.pruned_model, all_kept)
    record = run_compare(config, paths, expected_root=expected_root)
    rows = rows_by_check(record)
    row = rows["pruned PyTorch model smaller than dense"]
    assert row["status"] == FAIL
    assert f"{paths.pruned_model} is unpruned: it has as many parameters as the dense model" in row["detail"]
    assert rows["kept MACs within constraint"]["status"] == FAIL
    assert rows["pruned model is the one evaluated"]["status"] == FAIL
    assert f"make all EXPERIMENT={NAME} RESULTS={paths.root.parent} FORCE=prune" in rows["pruned model is the one evaluated"]["detail"]


def test_metric_out_of_tolerance_fails_one_row(experiment):
    config, paths, expected_root = experiment
    doctored = copy.deepcopy(EXPECTED)
    doctored["quantities"]["pruned.metric.value"]["value"] = 93.0
    (expected_root / f"{NAME}.yaml").write_text(yaml.safe_dump(doctored))
    record = run_compare(config, paths, expected_root=expected_root)
    assert failed_checks(record) == ["pruned.metric.value"]
    row = rows_by_check(record)["pruned.metric.value"]
    assert row["observed"] == "88.5"
    assert row["expected"] == "93 ± 1.5"


def test_invalid_loadgen_run_fails(experiment):
    config, paths, expected_root = experiment
    layout = MlperfLayout(config, paths)
    _write_loadgen_log(layout.performance_dir(Variant("pruned", False)), SAMPLES_PER_SECOND["pruned"], "INVALID")
    summary = json.loads(layout.summary.read_text())
    summary["variants"]["pruned"]["result"] = "INVALID"
    layout.summary.write_text(json.dumps(summary))
    record = run_compare(config, paths, expected_root=expected_root)
    assert failed_checks(record) == ["LoadGen result VALID (pruned)"]
    detail = rows_by_check(record)["LoadGen result VALID (pruned)"]["detail"]
    assert "reports INVALID" in detail
    assert "min_duration_satisfied" in detail


def test_loadgen_log_disagreeing_with_summary_fails(experiment):
    config, paths, expected_root = experiment
    layout = MlperfLayout(config, paths)
    _write_loadgen_log(layout.performance_dir(Variant("pruned", False)), SAMPLES_PER_SECOND["pruned"], "INVALID")
    record = run_compare(config, paths, expected_root=expected_root)
    detail = rows_by_check(record)["LoadGen result VALID (pruned)"]["detail"]
    assert "the MLPerf summary reports VALID" in detail


def test_quick_profile_skips_validity(experiment):
    config, paths, expected_root = experiment
    config.mlperf.profile = "quick"
    layout = MlperfLayout(config, paths)
    summary = json.loads(layout.summary.read_text())
    summary["settings"]["profile"] = "quick"
    summary["stage_key"] = mlperf_key(config)
    summary["variants"]["pruned"]["result"] = "INVALID"
    layout.summary.write_text(json.dumps(summary))
    _write_loadgen_log(layout.performance_dir(Variant("pruned", False)), SAMPLES_PER_SECOND["pruned"], "INVALID")
    record = run_compare(config, paths, expected_root=expected_root)
    row = rows_by_check(record)["LoadGen result VALID (pruned)"]
    assert row["status"] == SKIPPED
    assert "profile quick" in row["detail"]
    assert record["passed"] is True


def test_slower_pruned_model_fails_throughput(experiment):
    config, paths, expected_root = experiment
    layout = MlperfLayout(config, paths)
    _write_loadgen_log(layout.performance_dir(Variant("pruned", False)), 800.0)
    summary = json.loads(layout.summary.read_text())
    summary["variants"]["pruned"]["samples_per_second"] = 800.0
    summary["throughput_ratio"]["pruned_over_dense"] = 0.8
    layout.summary.write_text(json.dumps(summary))
    record = run_compare(config, paths, expected_root=expected_root)
    assert failed_checks(record) == ["throughput pruned / dense"]


def test_missing_metrics_names_file_and_target(experiment):
    config, paths, expected_root = experiment
    paths.metrics.unlink()
    record = run_compare(config, paths, expected_root=expected_root)
    rows = rows_by_check(record)
    make = f"make eval EXPERIMENT={NAME} RESULTS={paths.root.parent}"
    for check in ("dense.metric.value", "masked vs sliced max abs diff", "provenance recorded"):
        assert rows[check]["status"] == FAIL
        assert f"{paths.metrics} not found" in rows[check]["detail"]
        assert make in rows[check]["detail"]


def test_missing_mlperf_summary_names_target(experiment):
    config, paths, expected_root = experiment
    summary = paths.mlperf / "summary.json"
    summary.unlink()
    record = run_compare(config, paths, expected_root=expected_root)
    row = rows_by_check(record)["MLPerf results"]
    assert row["status"] == FAIL
    assert f"{summary} not found" in row["detail"]
    assert "make mlperf EXPERIMENT=tiny" in row["detail"]


def test_missing_expected_file_fails(experiment):
    config, paths, expected_root = experiment
    (expected_root / f"{NAME}.yaml").unlink()
    record = run_compare(config, paths, expected_root=expected_root)
    assert failed_checks(record) == ["expected results"]
    assert "scripts/make_expected_results.py" in rows_by_check(record)["expected results"]["detail"]


def test_malformed_expected_file_fails(experiment):
    config, paths, expected_root = experiment
    doctored = copy.deepcopy(EXPECTED)
    doctored["quantities"]["metric_drop"]["tolerence"] = 1.0
    (expected_root / f"{NAME}.yaml").write_text(yaml.safe_dump(doctored))
    record = run_compare(config, paths, expected_root=expected_root)
    row = rows_by_check(record)["expected results"]
    assert row["status"] == FAIL
    assert "unknown key quantities[metric_drop].tolerence" in row["detail"]
    assert record["passed"] is False


def test_expected_results_for_other_constraint_fail(experiment):
    config, paths, expected_root = experiment
    config.prune.constraint = 0.6
    record = run_compare(config, paths, expected_root=expected_root)
    rows = rows_by_check(record)
    assert "holds numbers for constraint 0.5, but the experiment runs 0.6" in rows["expected results"]["detail"]
    assert rows["pruned.metric.value"]["status"] == SKIPPED
    assert rows["outputs match the experiment"]["status"] == FAIL


def test_script_exit_status(experiment, monkeypatch):
    config, paths, expected_root = experiment
    experiment_file = expected_root.parent / "tiny.yaml"
    experiment_file.write_text(yaml.safe_dump(config.to_dict()))
    monkeypatch.chdir(expected_root.parent)
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare.py"
    arguments = ["compare.py", "--experiment", str(experiment_file), "--results-dir", str(paths.root.parent)]

    monkeypatch.setattr(sys, "argv", arguments)
    with pytest.raises(SystemExit) as passed:
        runpy.run_path(str(script), run_name="__main__")
    assert passed.value.code == 0

    paths.metrics.unlink()
    with pytest.raises(SystemExit) as failed:
        runpy.run_path(str(script), run_name="__main__")
    assert failed.value.code == 1


# Expected-results files: each malformed file is rejected with a message that names the key.

VALID_QUANTITY = {"value": 1.0, "direction": "within", "absolute_tolerance": 0.5, "source": "ours"}


def _with(change) -> dict:
    data = copy.deepcopy(EXPECTED)
    change(data)
    return data


MALFORMED = [
    ("unknown top-level key", lambda d: d.update(experimnt="x"), "unknown key experimnt"),
    ("unknown quantity key", lambda d: d["quantities"]["metric_drop"].update(tol=1), "unknown key quantities[metric_drop].tol"),
    ("value of wrong type", lambda d: d["quantities"]["metric_drop"].update(value="high"), "quantities[metric_drop].value: expected a number"),
    ("missing source", lambda d: d["quantities"]["metric_drop"].pop("source"), "quantities[metric_drop].source is missing"),
    ("unknown source", lambda d: d["quantities"]["metric_drop"].update(source="paper"), "quantities[metric_drop].source: unknown source 'paper'"),
    ("missing direction", lambda d: d["quantities"]["metric_drop"].pop("direction"), "quantities[metric_drop].direction is missing"),
    ("bad direction", lambda d: d["quantities"]["metric_drop"].update(direction="above"), "quantities[metric_drop].direction: invalid value 'above'"),
    (
        "within without tolerance",
        lambda d: d["quantities"]["dense.metric.value"].pop("absolute_tolerance"),
        "quantities[dense.metric.value]: direction within needs",
    ),
    (
        "two tolerances",
        lambda d: d["quantities"]["metric_drop"].update(relative_tolerance=0.1),
        "quantities[metric_drop]: give absolute_tolerance or relative_tolerance, not both",
    ),
    ("unknown quantity root", lambda d: d["quantities"].update({"accuracy.value": VALID_QUANTITY}), "quantities[accuracy.value]: unknown quantity path"),
    ("measurement without machine", lambda d: d["sources"]["ours"].pop("machine"), "sources[ours].machine is missing"),
    ("measurement without seeds", lambda d: d["sources"]["ours"].pop("seeds"), "sources[ours].seeds is missing"),
    ("invalid date", lambda d: d["sources"]["ours"].update(date="31.01.2025"), "sources[ours].date: invalid date"),
    ("bad source kind", lambda d: d["sources"]["ours"].update(kind="blog"), "sources[ours].kind: invalid value 'blog'"),
    ("missing experiment", lambda d: d.pop("experiment"), "experiment is missing"),
    ("quantities not a mapping", lambda d: d.update(quantities=[1]), "quantities: expected a mapping"),
]


@pytest.mark.parametrize("change, message", [(case[1], case[2]) for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_expected_rejected(change, message):
    with pytest.raises(ExpectedResultsError) as error:
        parse_expected(_with(change))
    assert message in str(error.value)


def test_expected_file_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("format: 1\nexperiment: x\nsources: {}\nquantities:\n  metric_drop: {value: 1}\n")
    with pytest.raises(ExpectedResultsError) as error:
        load_expected(path)
    assert str(error.value).startswith(f"{path}: quantities[metric_drop]")


def test_expected_unquoted_date_accepted(tmp_path):
    path = tmp_path / "dated.yaml"
    text = yaml.safe_dump(EXPECTED, sort_keys=False).replace("date: '2025-01-31'", "date: 2025-01-31")
    assert "date: 2025-01-31" in text
    path.write_text(text)
    assert load_expected(path).sources["ours"].date == "2025-01-31"


def test_expected_bounds():
    quantity = parse_expected(EXPECTED).quantities["metric_drop"]
    assert quantity.holds(2.5)
    assert not quantity.holds(2.51)
    assert not quantity.holds(float("nan"))
    relative = parse_expected(
        {**EXPECTED, "quantities": {"mlperf.throughput_ratio": {"value": 2.0, "direction": "at_least", "relative_tolerance": 0.25, "source": "ours"}}}
    ).quantities["mlperf.throughput_ratio"]
    assert relative.holds(1.5)
    assert not relative.holds(1.49)
    assert np.isclose(relative.tolerance(), 0.5)
