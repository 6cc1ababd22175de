"""The mlperf stage: the dense and the pruned model under MLPerf LoadGen, laid out like a submission.

The variants are the dense and the pruned model, plus their int8 copies when `mlperf.int8` is
set. The stage exports each variant to ONNX and checks the export against PyTorch. Then it runs
LoadGen's performance and accuracy modes in the Offline scenario on ONNX Runtime and scores the
accuracy log with the eval stage's post-processing. Below `results/<experiment>/mlperf/`:

    onnx/<model>/model.onnx, model.onnx.data     the exported models
    <system>/<model>/Offline/performance/run_1/  LoadGen summary and detail logs
    <system>/<model>/Offline/accuracy/           LoadGen logs, mlperf_log_accuracy.json, accuracy.txt
    <system>/<model>/Offline/user.conf, measurements.json
    calibration/<model>/run_1/, run_2/           the runs that set target_qps (full profile only)
    model_mapping.json, systems/<system>.json, samples.npz, summary.json

summary.json is written last and carries the stage key, so an interrupted run starts again.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from bertprune.config import ExperimentConfig
from bertprune.experiment import (
    ExperimentPaths,
    eval_key,
    invalidate_downstream,
    is_up_to_date,
    prune_key,
    require_record,
    stage_key,
)
from bertprune.export import (
    ExportReport,
    check_parameter_count,
    check_pruned_smaller,
    export_onnx,
    measure_export,
    onnx_data_files,
    quantize_int8,
    torch_parameter_count,
)
from bertprune.mlperf.accuracy import judge_accuracy, read_accuracy_log, write_accuracy_txt
from bertprune.mlperf.harness import (
    ACCURACY_LOG_FILE,
    DETAIL_FILE,
    SUMMARY_FILE,
    TRACE_FILE,
    HarnessSpec,
    read_detail,
    read_summary,
    run_loadgen,
    user_conf_text,
)
from bertprune.mlperf.qsl import QUESTION_ANSWERING, SampleSet, padded_sample_set, squad_sample_set
from bertprune.models import load_model, load_pruned_model, load_tokenizer
from bertprune.provenance import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    library_versions,
    provenance,
    sha256_file,
)
from bertprune.tasks import Task, make_task

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = 1
ONNX_FILE = "model.onnx"
MLPERF_MODEL = "bert-99"


@dataclass(frozen=True)
class Variant:
    """One model that the stage measures: the dense or the pruned model, in fp32 or int8."""

    source: str  # "dense" or "pruned"
    int8: bool

    @property
    def name(self) -> str:
        return f"{self.source}-int8" if self.int8 else self.source


class MlperfLayout:
    """The files of the mlperf stage below `results/<experiment>/mlperf/`."""

    def __init__(self, config: ExperimentConfig, paths: ExperimentPaths):
        self.root = paths.mlperf
        self.system = config.mlperf.system_name
        self.prefix = config.name.replace("/", "-")
        self.samples = self.root / "samples.npz"
        self.model_mapping = self.root / "model_mapping.json"
        self.system_description = self.root / "systems" / f"{self.system}.json"
        self.summary = self.root / "summary.json"

    def model_name(self, variant: Variant) -> str:
        return f"{self.prefix}-{variant.name}"

    def onnx_model(self, variant: Variant) -> Path:
        return self.root / "onnx" / self.model_name(variant) / ONNX_FILE

    def scenario_dir(self, variant: Variant) -> Path:
        return self.root / self.system / self.model_name(variant) / "Offline"

    def performance_dir(self, variant: Variant) -> Path:
        return self.scenario_dir(variant) / "performance" / "run_1"

    def accuracy_dir(self, variant: Variant) -> Path:
        return self.scenario_dir(variant) / "accuracy"

    def calibration_dir(self, variant: Variant) -> Path:
        return self.root / "calibration" / self.model_name(variant)


def mlperf_key(config: ExperimentConfig) -> str:
    return stage_key(config, ("mlperf",), [eval_key(config)])


def variants_of(config: ExperimentConfig) -> list[Variant]:
    result = [Variant("dense", False), Variant("pruned", False)]
    if config.mlperf.int8:
        result += [Variant("dense", True), Variant("pruned", True)]
    return result


def build_samples(config: ExperimentConfig, task: Task) -> SampleSet:
    """Return the dev-set samples that LoadGen queries, tokenized before any timing starts."""
    if task.kind == QUESTION_ANSWERING:
        _, features = task.dev_examples_and_features()
        return squad_sample_set(features)
    return padded_sample_set(task.dev_set().columns, config.task.max_seq_length, task.kind)


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def _export_one(model, path: Path, task: Task, samples: SampleSet, config: ExperimentConfig) -> ExportReport:
    with atomic_directory(path.parent) as staging:
        export_onnx(model, staging / path.name, task_kind=task.kind, input_names=config.mlperf.input_names)
        report = measure_export(model, staging / path.name, samples)
    report.path = str(path)
    return report


def _quantize_one(model, fp32_path: Path, path: Path, samples: SampleSet) -> ExportReport:
    with atomic_directory(path.parent) as staging:
        quantize_int8(fp32_path, staging / path.name)
        report = measure_export(model, staging / path.name, samples)
    report.path = str(path)
    return report


def export_variants(
    config: ExperimentConfig,
    task: Task,
    samples: SampleSet,
    layout: MlperfLayout,
    dense_source: str,
    pruned_folder: Path,
) -> dict[str, dict[str, Any]]:
    """Export every variant and check it. Raises ExportMismatchError for an export that cannot be trusted."""
    models = {"dense": load_model(dense_source, task.kind, task.num_labels), "pruned": load_pruned_model(pruned_folder)}
    # PyTorch parameter counts are compared first, so an unpruned model is rejected before any export.
    check_pruned_smaller(
        torch_parameter_count(models["pruned"]), torch_parameter_count(models["dense"]), "PyTorch model"
    )
    reports: dict[str, ExportReport] = {}
    for source in ("dense", "pruned"):
        model = models.pop(source)
        fp32 = Variant(source, False)
        report = _export_one(model, layout.onnx_model(fp32), task, samples, config)
        check_parameter_count(report.parameter_count, model, source)
        reports[fp32.name] = report
        if config.mlperf.int8:
            int8 = Variant(source, True)
            reports[int8.name] = _quantize_one(model, layout.onnx_model(fp32), layout.onnx_model(int8), samples)
        del model
        gc.collect()

    check_pruned_smaller(reports["pruned"].parameter_count, reports["dense"].parameter_count)
    if config.mlperf.int8:
        check_pruned_smaller(
            reports["pruned-int8"].parameter_count, reports["dense-int8"].parameter_count, "int8 ONNX export"
        )
    return {name: {**report.to_dict(), "sha256": onnx_file_hashes(report.path)} for name, report in reports.items()}


def onnx_file_hashes(path: str | Path) -> dict[str, str]:
    """Return the sha256 of the `.onnx` file and of each external data file, keyed by file name."""
    return {file.name: sha256_file(file) for file in onnx_data_files(path)}


# ---------------------------------------------------------------------------------------------
# LoadGen runs
# ---------------------------------------------------------------------------------------------


# A full run's target_qps is the calibrated throughput times this margin. LoadGen's one Offline
# query contains 1.1 x min_duration x target_qps samples, so a target more than 9% below the real
# throughput ends the run before min_duration (INVALID), while a higher target lengthens it.
# The pruned default model ran 12% faster over 617 s than in its 30 s calibration.
CALIBRATION_MARGIN = 1.10


def _calibration_run(
    config: ExperimentConfig, layout: MlperfLayout, variant: Variant, samples: SampleSet, folder: Path, query_count: int
) -> float:
    """Run one quick performance run of `query_count` samples in `folder` and return its samples per second."""
    user_conf = folder / "user.conf"
    atomic_write_text(user_conf, user_conf_text(profile="quick", sample_count=len(samples), query_count=query_count))
    run_loadgen(_spec(config, layout, variant, user_conf, performance_dir=folder, accuracy_dir=None))
    measured = read_summary(folder / SUMMARY_FILE)["samples_per_second"]
    if not measured:
        raise RuntimeError(f"the calibration run in {folder} reported no samples per second")
    return measured


def _calibrated_target_qps(config: ExperimentConfig, layout: MlperfLayout, variant: Variant, samples: SampleSet) -> float:
    """Measure the throughput that sets target_qps of a full run.

    A quick run of `quick_query_count` samples gives a first estimate, which sizes a second run
    of about `calibration_seconds`. The target is the second run's throughput times
    CALIBRATION_MARGIN.
    """
    folder = layout.calibration_dir(variant)
    if folder.exists():
        shutil.rmtree(folder)
    first = _calibration_run(config, layout, variant, samples, folder / "run_1", config.mlperf.quick_query_count)
    query_count = max(config.mlperf.quick_query_count, math.ceil(first * config.mlperf.calibration_seconds))
    measured = _calibration_run(config, layout, variant, samples, folder / "run_2", query_count)
    target_qps = measured * CALIBRATION_MARGIN
    logger.info(
        "calibration of %s: %.2f samples/s over %d samples (first estimate %.2f), target_qps %.2f",
        layout.model_name(variant),
        measured,
        query_count,
        first,
        target_qps,
    )
    return target_qps


def _spec(
    config: ExperimentConfig,
    layout: MlperfLayout,
    variant: Variant,
    user_conf: Path,
    performance_dir: Path | None,
    accuracy_dir: Path | None,
) -> HarnessSpec:
    return HarnessSpec(
        model_path=str(layout.onnx_model(variant)),
        samples_path=str(layout.samples),
        user_conf=str(user_conf),
        performance_dir=None if performance_dir is None else str(performance_dir),
        accuracy_dir=None if accuracy_dir is None else str(accuracy_dir),
        batch_size=config.mlperf.batch_size,
        intra_op_threads=config.mlperf.intra_op_threads,
        trim_padding=config.mlperf.trim_padding,
    )


def write_user_conf(
    config: ExperimentConfig, layout: MlperfLayout, variant: Variant, samples: SampleSet
) -> tuple[Path, float | None]:
    """Write the variant's user.conf and return its path and target_qps (None for the quick profile).

    The full profile first runs the calibration that measures target_qps.
    """
    settings = config.mlperf
    path = layout.scenario_dir(variant) / "user.conf"
    target_qps = None
    if settings.profile == "full":
        target_qps = _calibrated_target_qps(config, layout, variant, samples)
        text = user_conf_text(profile="full", sample_count=len(samples), target_qps=target_qps)
    else:
        text = user_conf_text(profile="quick", sample_count=len(samples), query_count=settings.quick_query_count)
    atomic_write_text(path, text)
    return path, target_qps


def _remove_empty_logs(performance_dir: Path, accuracy_dir: Path) -> None:
    """Delete the logs that hold nothing: the traces (tracing is off) and performance mode's accuracy log."""
    for path in (performance_dir / TRACE_FILE, accuracy_dir / TRACE_FILE, performance_dir / ACCURACY_LOG_FILE):
        path.unlink(missing_ok=True)


def measure_variant(
    config: ExperimentConfig,
    task: Task,
    samples: SampleSet,
    layout: MlperfLayout,
    variant: Variant,
    eval_record: dict[str, Any],
) -> dict[str, Any]:
    """Run LoadGen's performance and accuracy modes for one variant and score its accuracy log."""
    performance_dir, accuracy_dir = layout.performance_dir(variant), layout.accuracy_dir(variant)
    for folder in (performance_dir, accuracy_dir):
        if folder.exists():
            shutil.rmtree(folder)
    user_conf, target_qps = write_user_conf(config, layout, variant, samples)
    run_loadgen(_spec(config, layout, variant, user_conf, performance_dir, accuracy_dir))

    _remove_empty_logs(performance_dir, accuracy_dir)

    summary = read_summary(performance_dir / SUMMARY_FILE)
    detail = read_detail(performance_dir / DETAIL_FILE)
    outputs = read_accuracy_log(
        accuracy_dir / ACCURACY_LOG_FILE, num_samples=len(samples), kind=samples.kind, seq_len=samples.seq_len
    )
    metrics = task.metrics_from_outputs(outputs)
    primary = task.primary_metric
    question_answering = task.kind == QUESTION_ANSWERING
    judgement = judge_accuracy(metrics, primary, eval_record["dense"]["all_metrics"][primary], question_answering)
    write_accuracy_txt(accuracy_dir / "accuracy.txt", metrics, judgement, question_answering)
    # The eval value of an int8 variant is that of its fp32 PyTorch model.
    eval_value = eval_record[variant.source]["all_metrics"][primary]
    logger.info(
        "%s: %.2f samples/s (%s), %s %.3f under LoadGen vs %.3f in eval",
        layout.model_name(variant),
        summary["samples_per_second"] or 0.0,
        summary["result"],
        primary,
        metrics[primary],
        eval_value,
    )
    return {
        "model_name": layout.model_name(variant),
        "samples_per_second": summary["samples_per_second"],
        "result": summary["result"],
        "performance_summary": summary,
        "samples_per_query": detail.get("effective_samples_per_query"),
        "loadgen_errors": detail["logged_errors"],
        "target_qps": target_qps,
        "metric": {
            "name": primary,
            "loadgen_accuracy": metrics[primary],
            "eval": eval_value,
            "difference": metrics[primary] - eval_value,
        },
        "all_metrics": metrics,
        "judgement": judgement,
    }


# ---------------------------------------------------------------------------------------------
# Submission files
# ---------------------------------------------------------------------------------------------


def _read_cpu_info() -> tuple[str, int | None]:
    """Return the CPU model name and the number of physical cores from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), None
    model, cores, physical_id, core_id = "", set(), None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
        elif not key and physical_id is not None and core_id is not None:
            cores.add((physical_id, core_id))
            physical_id = core_id = None
    if physical_id is not None and core_id is not None:
        cores.add((physical_id, core_id))
    return model or platform.machine(), len(cores) or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def system_description(system_name: str) -> dict[str, Any]:
    """Return the fields of an MLPerf system description that this machine can fill in."""
    cpu_model, physical_cores = _read_cpu_info()
    versions = library_versions()
    memory = _memory_gib()
    return {
        "submitter": "",
        "division": "open",
        "status": "rdi",
        "system_name": system_name,
        # NOTE: only the Offline scenario is run, which neither system type's rules find complete.
        "system_type": "edge",
        "number_of_nodes": 1,
        "host_processor_model_name": cpu_model,
        "host_processors_per_node": 1,
        "host_processor_core_count": physical_cores,
        "host_logical_cpus": os.cpu_count(),
        "host_memory_capacity": f"{memory} GiB" if memory is not None else "",
        "accelerators_per_node": 0,
        "accelerator_model_name": "",
        "framework": f"ONNX Runtime {versions['onnxruntime']} (CPUExecutionProvider)",
        "operating_system": platform.platform(),
        "other_software_stack": {name: version for name, version in versions.items() if name != "onnxruntime"},
    }


def _measurements(
    config: ExperimentConfig, variant: Variant, dense_source: str, export: dict[str, Any], prune_record: dict[str, Any]
) -> dict[str, Any]:
    transformations = []
    if variant.source == "pruned":
        kept = 100 * prune_record["pruned_encoder_macs"] / prune_record["dense_encoder_macs"]
        transformations.append(
            f"post-training structured pruning of attention heads and FFN neurons to {kept:.1f}% of encoder MACs "
            "(Fisher importance, mask search, rearrangement, least-squares mask tuning), then slicing"
        )
    if variant.int8:
        transformations.append("dynamic int8 weight quantization (ONNX Runtime quantize_dynamic, QInt8)")
    return {
        "input_data_types": "int64",
        "retraining": "no",
        "starting_weights_filename": dense_source,
        "weight_data_types": "int8" if variant.int8 else "fp32",
        "weight_transformations": "; ".join(transformations) or "none",
        "onnx_parameter_count": export["parameter_count"],
        "onnx_file_bytes": export["file_bytes"],
        "onnx_sha256": export["sha256"],
        "input_names": config.mlperf.input_names,
    }


def _throughput_ratios(results: dict[str, dict[str, Any]], prune_record: dict[str, Any]) -> dict[str, Any]:
    def ratio(numerator: str, denominator: str) -> float | None:
        top = results.get(numerator, {}).get("samples_per_second")
        bottom = results.get(denominator, {}).get("samples_per_second")
        return top / bottom if top and bottom else None

    ratios = {
        "pruned_over_dense": ratio("pruned", "dense"),
        "ideal_from_macs": prune_record["dense_encoder_macs"] / prune_record["pruned_encoder_macs"],
    }
    if "pruned-int8" in results:
        ratios["pruned_int8_over_dense_int8"] = ratio("pruned-int8", "dense-int8")
        ratios["dense_int8_over_dense"] = ratio("dense-int8", "dense")
        ratios["pruned_int8_over_dense"] = ratio("pruned-int8", "dense")
    return ratios


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def run_mlperf(config: ExperimentConfig, paths: ExperimentPaths, force: bool = False) -> dict[str, Any]:
    """Measure the dense and the pruned model under LoadGen and write the submission-style results."""
    key = mlperf_key(config)
    layout = MlperfLayout(config, paths)
    if not force and is_up_to_date(layout.summary, key, [layout.model_mapping, layout.system_description]):
        logger.info("the MLPerf runs are up to date (%s)", layout.summary)
        record = require_record(layout.summary, key, "mlperf")
        print(format_table(record))
        return record
    prune_record = require_record(paths.prune_record, prune_key(config), "prune")
    eval_record = require_record(paths.metrics, eval_key(config), "eval")
    dense_source = prune_record["dense_model"]
    # A summary.json left by an earlier run would otherwise describe the files replaced below.
    layout.summary.unlink(missing_ok=True)
    invalidate_downstream(paths, "mlperf")

    tokenizer = load_tokenizer(dense_source)
    task = make_task(config, tokenizer)
    samples = build_samples(config, task)
    samples.save(layout.samples)
    logger.info("%d %s samples of length %d for LoadGen", len(samples), task.kind, samples.seq_len)

    exports = export_variants(config, task, samples, layout, dense_source, paths.pruned_model)
    variants = variants_of(config)
    results = {}
    for variant in variants:
        results[variant.name] = measure_variant(config, task, samples, layout, variant, eval_record)
        results[variant.name]["onnx"] = exports[variant.name]
        atomic_write_json(
            layout.scenario_dir(variant) / "measurements.json",
            _measurements(config, variant, dense_source, exports[variant.name], prune_record),
        )

    atomic_write_json(layout.model_mapping, {layout.model_name(variant): MLPERF_MODEL for variant in variants})
    atomic_write_json(layout.system_description, system_description(layout.system))
    record = {
        "format": SUMMARY_FORMAT,
        "stage_key": key,
        "experiment": config.name,
        "task": config.task.name,
        "system": layout.system,
        "settings": asdict(config.mlperf),
        "num_samples": len(samples),
        "seq_len": samples.seq_len,
        "variants": results,
        "throughput_ratio": _throughput_ratios(results, prune_record),
        "provenance": provenance(
            {f"{name}/{file}": digest for name, export in exports.items() for file, digest in export["sha256"].items()}
        ),
    }
    atomic_write_json(layout.summary, record)
    print(format_table(record))
    return record


def format_table(record: dict[str, Any]) -> str:
    """Return the per-variant table printed at the end of the stage."""
    rows = []
    for name, result in record["variants"].items():
        metric, export = result["metric"], result["onnx"]
        rows.append(
            [
                name,
                f"{result['samples_per_second']:.2f}" if result["samples_per_second"] else "n/a",
                result["result"],
                f"{metric['loadgen_accuracy']:.3f}",
                f"{metric['eval']:.3f}",
                f"{metric['difference']:+.3f}",
                f"{export['max_abs_diff']:.2g}",
                f"{export['parameter_count']:,}",
                f"{export['file_bytes'] / 1e6:.1f}",
            ]
        )
    metric_name = next(iter(record["variants"].values()))["metric"]["name"]
    headers = [
        "variant",
        "samples/s",
        "LoadGen result",
        f"{metric_name} (LoadGen)",
        f"{metric_name} (eval)",
        "difference",
        "ONNX vs PyTorch",
        "ONNX parameters",
        "ONNX MB",
    ]
    ratios = record["throughput_ratio"]
    measured = ratios["pruned_over_dense"]
    footer = (
        f"\n{record['experiment']} on {record['system']}, profile {record['settings']['profile']}: "
        f"pruned/dense throughput {measured:.2f}x" if measured else "\npruned/dense throughput: n/a"
    )
    footer += f", ideal from encoder MACs {ratios['ideal_from_macs']:.2f}x"
    return tabulate(rows, headers=headers, tablefmt="github") + footer
