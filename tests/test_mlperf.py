"""ONNX export and the MLPerf LoadGen harness on tiny models: both modes, accuracy, layout and refusals."""

import dataclasses
import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from tiny_mlperf import (
    prepare_squad_experiment,
    tiny_distilbert_classifier,
    tokenizer,
    write_toy_sst2,
)

from bertprune.config import ExperimentConfig, MlperfConfig, ModelConfig, TaskConfig
from bertprune.experiment import ExperimentPaths
from bertprune.export import (
    ExportMismatchError,
    check_parameter_count,
    check_pruned_smaller,
    export_onnx,
    measure_export,
    onnx_parameter_count,
)
from bertprune.mlperf.accuracy import MLPERF_BERT99_F1, read_accuracy_log
from bertprune.mlperf.harness import (
    ACCURACY_LOG_FILE,
    DETAIL_FILE,
    SUMMARY_FILE,
    HarnessSpec,
    read_detail,
    read_summary,
    run_loadgen,
    user_conf_text,
    warm_up,
)
from bertprune.mlperf.qsl import QuerySampleLibrary, SampleSet, padded_sample_set
from bertprune.mlperf.run import CALIBRATION_MARGIN, MlperfLayout, Variant, run_mlperf, write_user_conf
from bertprune.mlperf.sut import PADDING_LOGIT, OnnxRuntimeSut
from bertprune.tasks import make_task

QUERY_COUNT = 64


def _masked_question_answering_outputs(task, model):
    """Run the eval stage's PyTorch path and set padding positions to -10000, as the SUT's responses have them."""
    encoded = task.dev_set()
    outputs = task.scores(model, encoded, batch_size=16, desc="direct")
    is_token = np.stack(encoded.columns["attention_mask"]).astype(bool)
    return {name: np.where(is_token, values, PADDING_LOGIT) for name, values in outputs.items()}


# ---------------------------------------------------------------------------------------------
# Question answering through the whole stage
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def squad_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("squad-stage")
    config, paths, task, models = prepare_squad_experiment(root, name="tiny/squad", prune=True, int8=True)
    record = run_mlperf(config, paths)
    return SimpleNamespace(config=config, paths=paths, task=task, models=models, record=record)


def test_run_mlperf_writes_submission_layout(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    for name in ("dense", "pruned", "dense-int8", "pruned-int8"):
        variant = Variant(name.split("-")[0], name.endswith("int8"))
        performance, accuracy = layout.performance_dir(variant), layout.accuracy_dir(variant)
        assert (performance / SUMMARY_FILE).is_file()
        assert (performance / DETAIL_FILE).is_file()
        assert (accuracy / ACCURACY_LOG_FILE).is_file()
        assert (accuracy / "accuracy.txt").is_file()
        assert (layout.scenario_dir(variant) / "user.conf").is_file()
        assert (layout.scenario_dir(variant) / "measurements.json").is_file()
        assert layout.onnx_model(variant).is_file()
    mapping = json.loads(layout.model_mapping.read_text())
    assert mapping == {
        "tiny-squad-dense": "bert-99",
        "tiny-squad-pruned": "bert-99",
        "tiny-squad-dense-int8": "bert-99",
        "tiny-squad-pruned-int8": "bert-99",
    }
    system = json.loads(layout.system_description.read_text())
    assert system["host_processor_model_name"]
    assert system["framework"].startswith("ONNX Runtime")


def test_run_mlperf_runs_are_valid(squad_stage):
    for name, result in squad_stage.record["variants"].items():
        assert result["result"] == "VALID", name
        assert result["samples_per_second"] > 0, name
        assert result["samples_per_query"] == QUERY_COUNT, name
        assert result["loadgen_errors"] == [], name


def test_accuracy_mode_matches_direct_evaluation(squad_stage):
    task = squad_stage.task
    for name in ("dense", "pruned"):
        direct = task.metrics_from_outputs(_masked_question_answering_outputs(task, squad_stage.models[name]))
        loadgen = squad_stage.record["variants"][name]["all_metrics"]
        assert loadgen["f1"] == pytest.approx(direct["f1"], abs=0.05), name
        assert loadgen["exact_match"] == pytest.approx(direct["exact_match"], abs=0.05), name


def test_accuracy_txt_first_line_is_squad_json(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    lines = (layout.accuracy_dir(Variant("pruned", False)) / "accuracy.txt").read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["exact_match", "f1"]
    assert first["f1"] == pytest.approx(squad_stage.record["variants"]["pruned"]["all_metrics"]["f1"])
    assert any(str(MLPERF_BERT99_F1) in line for line in lines[1:])


def test_summary_reports_exports_and_ratios(squad_stage):
    record = squad_stage.record
    dense, pruned = record["variants"]["dense"], record["variants"]["pruned"]
    assert dense["onnx"]["max_abs_diff"] < 1e-4
    assert pruned["onnx"]["max_abs_diff"] < 1e-4
    assert pruned["onnx"]["parameter_count"] < dense["onnx"]["parameter_count"]
    assert dense["onnx"]["file_bytes"] > 0
    assert set(dense["onnx"]["sha256"]) == {"model.onnx", "model.onnx.data"}
    assert record["variants"]["pruned-int8"]["onnx"]["parameter_count"] < record["variants"]["dense-int8"]["onnx"]["parameter_count"]
    ratios = record["throughput_ratio"]
    assert ratios["ideal_from_macs"] > 1
    assert ratios["pruned_over_dense"] > 0
    speeds = {name: variant["samples_per_second"] for name, variant in record["variants"].items()}
    assert ratios["pruned_int8_over_dense"] == pytest.approx(speeds["pruned-int8"] / speeds["dense"])
    assert dense["metric"]["difference"] == pytest.approx(dense["metric"]["loadgen_accuracy"] - dense["metric"]["eval"])


def test_run_mlperf_skips_when_up_to_date(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    modified = layout.summary.stat().st_mtime_ns
    record = run_mlperf(squad_stage.config, squad_stage.paths)
    assert layout.summary.stat().st_mtime_ns == modified
    assert record["stage_key"] == squad_stage.record["stage_key"]


def test_forced_run_removes_old_summary_and_comparison(squad_stage, tmp_path, monkeypatch):
    shutil.copytree(squad_stage.paths.root, tmp_path / squad_stage.config.name)
    paths = ExperimentPaths(squad_stage.config, tmp_path)
    paths.compare_report.write_text("compare tiny/squad: PASS")

    def interrupted_export(*arguments, **options):
        raise RuntimeError("export interrupted")

    monkeypatch.setattr("bertprune.mlperf.run.export_variants", interrupted_export)
    with pytest.raises(RuntimeError, match="export interrupted"):
        run_mlperf(squad_stage.config, paths, force=True)
    assert not paths.mlperf_summary.exists()
    assert not paths.compare_report.exists()


def test_full_profile_calibrates_target_qps(squad_stage, tmp_path):
    config = dataclasses.replace(
        squad_stage.config,
        mlperf=dataclasses.replace(squad_stage.config.mlperf, profile="full", calibration_seconds=0.5),
    )
    source = MlperfLayout(squad_stage.config, squad_stage.paths)
    layout = MlperfLayout(config, SimpleNamespace(mlperf=tmp_path / "mlperf"))
    variant = Variant("pruned", False)
    shutil.copytree(source.onnx_model(variant).parent, layout.onnx_model(variant).parent)
    shutil.copy(source.samples, layout.samples)

    user_conf, target_qps = write_user_conf(config, layout, variant, SampleSet.load(layout.samples))
    assert target_qps > 0
    text = user_conf.read_text()
    assert f"bert.Offline.target_qps = {target_qps:.4f}" in text
    assert "min_duration" not in text
    first, second = (read_summary(layout.calibration_dir(variant) / run / SUMMARY_FILE) for run in ("run_1", "run_2"))
    assert second["samples_per_second"] * CALIBRATION_MARGIN == pytest.approx(target_qps, rel=1e-6)
    assert first["samples_per_second"] > 0


def test_qa_export_uses_mlperf_names(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    graph = onnx.load(str(layout.onnx_model(Variant("pruned", False))), load_external_data=False).graph
    assert [item.name for item in graph.input] == ["input_ids", "input_mask", "segment_ids"]
    assert [item.name for item in graph.output] == ["start_logits", "end_logits"]
    for item in graph.input:
        dims = item.type.tensor_type.shape.dim
        assert all(dim.dim_param for dim in dims), item.name


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def test_unpruned_model_as_pruned_rejected(tmp_path):
    config, paths, _, _ = prepare_squad_experiment(tmp_path, name="unpruned", prune=False, int8=False)
    with pytest.raises(ExportMismatchError, match="unpruned"):
        run_mlperf(config, paths)
    assert not (paths.mlperf / "summary.json").exists()
    assert not list(paths.mlperf.rglob("*.onnx"))


def test_export_of_other_model_rejected(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    dense_count = onnx_parameter_count(layout.onnx_model(Variant("dense", False)))
    with pytest.raises(ExportMismatchError, match="does not match"):
        check_parameter_count(dense_count, squad_stage.models["pruned"], "pruned")
    check_parameter_count(dense_count, squad_stage.models["dense"], "dense")
    with pytest.raises(ExportMismatchError, match="unpruned"):
        check_pruned_smaller(dense_count, dense_count)


# ---------------------------------------------------------------------------------------------
# Classification on a model without token_type_ids
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifier")
    tokenizer_ = tokenizer()
    config = ExperimentConfig(
        name="tiny-sst2",
        model=ModelConfig(source="unused"),
        task=TaskConfig(name="sst2", data_dir=str(write_toy_sst2(root / "glue")), max_seq_length=48),
        mlperf=MlperfConfig(quick_query_count=QUERY_COUNT, batch_size=4, intra_op_threads=1),
    )
    task = make_task(config, tokenizer_)
    model = tiny_distilbert_classifier(tokenizer_.vocab_size)
    samples = padded_sample_set(task.dev_set().columns, config.task.max_seq_length, task.kind)
    samples_path = root / "samples.npz"
    samples.save(samples_path)
    onnx_path = export_onnx(model, root / "onnx" / "model.onnx", task_kind=task.kind)
    user_conf = root / "user.conf"
    user_conf.write_text(user_conf_text(profile="quick", sample_count=len(samples), query_count=QUERY_COUNT))
    return SimpleNamespace(
        root=root, task=task, model=model, samples=samples, samples_path=samples_path, onnx_path=onnx_path, user_conf=user_conf
    )


def _spec(classifier, performance_dir, accuracy_dir=None):
    return HarnessSpec(
        model_path=str(classifier.onnx_path),
        samples_path=str(classifier.samples_path),
        user_conf=str(classifier.user_conf),
        performance_dir=str(performance_dir),
        accuracy_dir=None if accuracy_dir is None else str(accuracy_dir),
        batch_size=4,
        intra_op_threads=1,
        show_progress=False,
    )


def test_classification_export_without_token_type_ids(classifier):
    graph = onnx.load(str(classifier.onnx_path), load_external_data=False).graph
    assert [item.name for item in graph.input] == ["input_ids", "attention_mask"]
    assert [item.name for item in graph.output] == ["logits"]
    report = measure_export(classifier.model, classifier.onnx_path, classifier.samples)
    assert report.max_abs_diff < 1e-4
    check_parameter_count(report.parameter_count, classifier.model, "dense")


def test_classification_both_modes_match_evaluation(classifier, tmp_path):
    performance_dir, accuracy_dir = tmp_path / "performance", tmp_path / "accuracy"
    run_loadgen(_spec(classifier, performance_dir, accuracy_dir))

    summary = read_summary(performance_dir / SUMMARY_FILE)
    assert summary["result"] == "VALID"
    assert read_detail(performance_dir / DETAIL_FILE)["effective_samples_per_query"] == QUERY_COUNT
    outputs = read_accuracy_log(
        accuracy_dir / ACCURACY_LOG_FILE,
        num_samples=len(classifier.samples),
        kind=classifier.samples.kind,
        seq_len=classifier.samples.seq_len,
    )
    assert outputs["logits"].shape == (len(classifier.samples), 2)
    loadgen = classifier.task.metrics_from_outputs(outputs)
    direct = classifier.task.evaluate(classifier.model, batch_size=8)
    assert loadgen["accuracy"] == pytest.approx(direct["accuracy"], abs=0.05)


def test_missing_log_folder_created(classifier, tmp_path):
    performance_dir = tmp_path / "not" / "yet" / "there"
    run_loadgen(_spec(classifier, performance_dir))
    assert read_summary(performance_dir / SUMMARY_FILE)["result"] == "VALID"


def test_audit_config_in_cwd_ignored(classifier, tmp_path, monkeypatch, caplog):
    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "audit.config").write_text("*.Offline.min_query_count = 7\n*.Offline.max_query_count = 7\n")
    monkeypatch.chdir(caller)
    performance_dir = tmp_path / "performance"
    with caplog.at_level(logging.WARNING, logger="bertprune.mlperf.harness"):
        run_loadgen(_spec(classifier, performance_dir))
    assert read_detail(performance_dir / DETAIL_FILE)["effective_samples_per_query"] == QUERY_COUNT
    assert any("audit.config" in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------------------------------------
# Units of the harness
# ---------------------------------------------------------------------------------------------


def test_sut_trimming_keeps_question_answering_logits(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    samples = SampleSet.load(layout.samples)
    model_path = layout.onnx_model(Variant("dense", False))
    qsl = QuerySampleLibrary(samples)
    indices = np.arange(len(samples))
    trimmed = OnnxRuntimeSut(model_path, qsl, batch_size=5, trim_padding=True).predict(indices)
    full = OnnxRuntimeSut(model_path, qsl, batch_size=len(samples), trim_padding=False).predict(indices)
    assert trimmed.shape == (len(samples), samples.seq_len, 2)
    np.testing.assert_allclose(trimmed, full, atol=1e-4)
    padding = ~samples.inputs["attention_mask"].astype(bool)
    assert np.all(trimmed[padding] == PADDING_LOGIT)


def test_warm_up_runs_longest_batch(squad_stage):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    samples = SampleSet.load(layout.samples)
    sut = OnnxRuntimeSut(layout.onnx_model(Variant("pruned", False)), QuerySampleLibrary(samples), batch_size=4)
    batch = warm_up(sut)
    assert len(batch) == 4
    assert samples.lengths[batch].min() >= np.sort(samples.lengths)[-4]


def test_sut_failure_completes_every_sample(squad_stage, monkeypatch):
    layout = MlperfLayout(squad_stage.config, squad_stage.paths)
    samples = SampleSet.load(layout.samples)
    qsl = QuerySampleLibrary(samples)
    qsl.load_samples(list(range(len(samples))))
    sut = OnnxRuntimeSut(layout.onnx_model(Variant("dense", False)), qsl, batch_size=4, show_progress=False)
    completed = []
    monkeypatch.setattr(
        "bertprune.mlperf.sut.lg.QuerySamplesComplete",
        lambda responses: completed.extend((response.id, response.size) for response in responses),
    )
    run_batch = sut.run_batch
    calls = []

    def failing_run_batch(index):
        calls.append(len(index))
        if len(calls) == 2:
            raise RuntimeError("inference failed")
        return run_batch(index)

    monkeypatch.setattr(sut, "run_batch", failing_run_batch)
    query = [SimpleNamespace(id=1000 + index, index=index) for index in range(len(samples))]
    sut.issue_queries(query)

    assert isinstance(sut.error, RuntimeError)
    assert sorted(sample_id for sample_id, _ in completed) == [sample.id for sample in query]
    assert sum(size > 0 for _, size in completed) == 4
    assert sum(size == 0 for _, size in completed) == len(samples) - 4


def test_user_conf_profiles():
    quick = user_conf_text(profile="quick", sample_count=10833, query_count=512)
    assert "bert.Offline.min_query_count = 512" in quick
    assert "bert.Offline.max_query_count = 512" in quick
    assert "bert.Offline.min_duration = 0" in quick
    full = user_conf_text(profile="full", sample_count=10833, target_qps=12.5)
    assert "bert.Offline.target_qps = 12.5000" in full
    assert "min_duration" not in full
    assert "bert.Offline.performance_sample_count_override = 10833" in full
    with pytest.raises(ValueError, match="target_qps"):
        user_conf_text(profile="full", sample_count=10, target_qps=None)


def test_accuracy_log_missing_sample_rejected(tmp_path):
    path = tmp_path / ACCURACY_LOG_FILE
    data = np.zeros((4, 2), dtype="<f4").tobytes().hex()
    path.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": data}]))
    with pytest.raises(ValueError, match="no response for 1 of 2"):
        read_accuracy_log(path, num_samples=2, kind="question_answering", seq_len=8)


def test_accuracy_log_short_response_padded(tmp_path):
    path = tmp_path / ACCURACY_LOG_FILE
    pairs = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="<f4")
    path.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": pairs.tobytes().hex()}]))
    outputs = read_accuracy_log(path, num_samples=1, kind="question_answering", seq_len=4)
    np.testing.assert_array_equal(outputs["start_logits"][0], [1.0, 3.0, PADDING_LOGIT, PADDING_LOGIT])
    np.testing.assert_array_equal(outputs["end_logits"][0], [2.0, 4.0, PADDING_LOGIT, PADDING_LOGIT])


def test_padded_sample_set_rejects_long_row():
    columns = {"input_ids": [np.arange(1, 6)], "attention_mask": [np.ones(5, dtype=np.int64)]}
    with pytest.raises(ValueError, match="more than the padded length 4"):
        padded_sample_set(columns, 4, "classification")
