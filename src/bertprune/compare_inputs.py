"""Measurements of an experiment's outputs for `make compare`, taken from the files themselves.

The comparison trusts no record for the facts that an unpruned export would get wrong. Kept
heads, neurons and parameters are read from the tensor shapes in `pruned/model.safetensors`.
ONNX parameters and bytes are read from the `.onnx` file and its external data. The records
(metrics.json, prune.json, the MLPerf summary) are read for what only they know: task metrics,
the cost model, LoadGen results and provenance. CompareInputs reads each of them once, on first
use, and turns a missing file into MissingInput with the make command that writes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig

from bertprune.arch import get_adapter
from bertprune.config import ConfigError, ExperimentConfig
from bertprune.experiment import ExperimentPaths, read_record
from bertprune.expected import ExpectedResults, expected_results_path, load_expected
from bertprune.export import onnx_data_files, onnx_parameter_count
from bertprune.mlperf.run import MlperfLayout, Variant
from bertprune.models import PRUNING_FILE, WEIGHTS_FILE
from bertprune.slicing import encoder_parameter_count

MLPERF_SUMMARY_FILE = "summary.json"


class MissingInput(FileNotFoundError):
    """An output file of an earlier stage that the comparison needs; the message names the make target."""

    def __init__(self, path: Path, make_command: str, problem: str = "not found"):
        super().__init__(f"{path} {problem}; run `{make_command}`")
        self.path = path


@dataclass
class ModelStructure:
    """Heads, neurons and parameters of a saved model, against the dense architecture of its config.json."""

    folder: Path
    has_pruning_file: bool
    pruning_spec: dict[str, Any] | None
    num_heads: int
    intermediate_size: int
    dense_encoder_parameters: int
    encoder_parameters: int
    total_parameters: int
    heads_per_layer: list[int]
    neurons_per_layer: list[int]
    # Elements of the architecture's buffers, which an ONNX export may store as initializers.
    buffer_elements: int

    @property
    def dense_total_parameters(self) -> int:
        """Parameters of the dense model: pruning changes only the encoder layers."""
        return self.total_parameters - self.encoder_parameters + self.dense_encoder_parameters

    @property
    def is_unpruned(self) -> bool:
        """True when every layer keeps every head and neuron of the dense architecture."""
        return all(heads == self.num_heads for heads in self.heads_per_layer) and all(
            neurons == self.intermediate_size for neurons in self.neurons_per_layer
        )


def _architecture_class(folder: Path, spec: dict[str, Any] | None, config) -> type:
    names = [spec.get("architecture")] if spec else []
    names += list(getattr(config, "architectures", None) or [])
    for name in names:
        if name and hasattr(transformers, name):
            return getattr(transformers, name)
    raise ValueError(f"{folder}: neither pruning.json nor config.json names a transformers model class")


def measure_model_folder(folder: Path, make_command: str) -> ModelStructure:
    """Measure a saved model from its tensor shapes, without loading its weights.

    The dense architecture is built on the meta device from config.json (which a pruned model
    keeps unchanged), so its layer and projection names locate each layer's tensors in the file.
    A layer whose query projection (or FFN input projection) is absent from the file keeps no
    heads (or neurons).
    """
    weights = folder / WEIGHTS_FILE
    for path in (folder / "config.json", weights):
        if not path.is_file():
            raise MissingInput(path, make_command)
    spec_path = folder / PRUNING_FILE
    spec = json.loads(spec_path.read_text()) if spec_path.is_file() else None
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        dense = _architecture_class(folder, spec, config)._from_config(config)
    adapter = get_adapter(dense)
    shape = adapter.shape()
    module_names = {id(module): name for name, module in dense.named_modules()}

    with safe_open(str(weights), framework="pt") as file:
        shapes = {name: file.get_slice(name).get_shape() for name in file.keys()}
    heads, neurons, encoder_parameters = [], [], 0
    for layer in adapter.layers():
        prefix = module_names[id(layer)] + "."
        encoder_parameters += sum(math.prod(size) for name, size in shapes.items() if name.startswith(prefix))
        parts = adapter.parts(layer)
        query = shapes.get(module_names[id(parts.query)] + ".weight")
        ffn_input = shapes.get(module_names[id(parts.ffn_input)] + ".weight")
        heads.append(query[0] // shape.head_size if query else 0)
        neurons.append(ffn_input[0] if ffn_input else 0)
    return ModelStructure(
        folder=folder,
        has_pruning_file=spec is not None,
        pruning_spec=spec,
        num_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        dense_encoder_parameters=encoder_parameter_count(adapter),
        encoder_parameters=encoder_parameters,
        total_parameters=sum(math.prod(size) for size in shapes.values()),
        heads_per_layer=heads,
        neurons_per_layer=neurons,
        buffer_elements=sum(buffer.numel() for buffer in dense.buffers()),
    )


@dataclass
class OnnxFile:
    """Parameters (initializer elements) and bytes (the `.onnx` file plus its external data) of an export."""

    path: Path
    parameters: int
    bytes: int


def measure_onnx(path: Path, make_command: str) -> OnnxFile:
    if not path.is_file():
        raise MissingInput(path, make_command)
    files = onnx_data_files(path)
    for file in files[1:]:
        if not file.is_file():
            raise MissingInput(file, make_command, problem=f"(the external data of {path.name}) not found")
    return OnnxFile(path=path, parameters=onnx_parameter_count(path), bytes=sum(file.stat().st_size for file in files))


@dataclass
class LoadgenVariant:
    """One model variant of the MLPerf stage: its ONNX file, LoadGen results and accuracy."""

    name: str
    onnx_file: Path
    log_summary: Path
    onnx_sha256: dict[str, str] = field(default_factory=dict)
    samples_per_second: float | None = None
    validity: str | None = None
    accuracy_metric: float | None = None
    eval_metric: float | None = None
    onnx_vs_pytorch_max_abs_diff: float | None = None
    onnx_parameters: int | None = None
    onnx_bytes: int | None = None


@dataclass
class MlperfSummary:
    """The MLPerf stage's summary.json, with the variants it ran (dense, pruned, dense-int8, pruned-int8)."""

    path: Path
    stage_key: str | None
    profile: str | None
    variants: dict[str, LoadgenVariant] = field(default_factory=dict)
    throughput_ratio: float | None = None
    int8_throughput_ratio: float | None = None
    mac_ideal_ratio: float | None = None
    provenance: dict[str, Any] | None = None

    def quantities(self) -> dict[str, Any]:
        """Return the values that expected-results paths `mlperf.<...>` address."""
        values: dict[str, Any] = {
            "profile": self.profile,
            "throughput_ratio": self.throughput_ratio,
            "int8_throughput_ratio": self.int8_throughput_ratio,
            "mac_ideal_ratio": self.mac_ideal_ratio,
        }
        skipped = ("name", "onnx_file", "log_summary", "onnx_sha256")
        for name, variant in self.variants.items():
            values[name] = {key: value for key, value in variant.__dict__.items() if key not in skipped}
        return values


def read_mlperf_summary(path: Path) -> MlperfSummary:
    """Read the summary.json of bertprune.mlperf.run; the only function that reads its field names.

    Each variant's ONNX file is the path the stage exported and LoadGen ran; its performance log
    is `<system>/<model_name>/Offline/performance/run_1/mlperf_log_summary.txt` beside the summary.
    """
    data = json.loads(path.read_text())
    mlperf_dir = path.parent
    system = data["system"]
    variants = {}
    for name, entry in data.get("variants", {}).items():
        onnx, metric = entry.get("onnx", {}), entry.get("metric", {})
        model_name = entry["model_name"]
        log = mlperf_dir / system / model_name / "Offline" / "performance" / "run_1" / "mlperf_log_summary.txt"
        onnx_file = Path(onnx["path"])
        if not onnx_file.is_absolute() and not onnx_file.exists():
            # The stage records the path relative to the working directory it ran in.
            onnx_file = mlperf_dir / "onnx" / model_name / onnx_file.name
        variants[name] = LoadgenVariant(
            name=name,
            onnx_file=onnx_file,
            log_summary=log,
            onnx_sha256=onnx.get("sha256", {}),
            samples_per_second=entry.get("samples_per_second"),
            validity=entry.get("result"),
            accuracy_metric=metric.get("loadgen_accuracy"),
            eval_metric=metric.get("eval"),
            onnx_vs_pytorch_max_abs_diff=onnx.get("max_abs_diff"),
            onnx_parameters=onnx.get("parameter_count"),
            onnx_bytes=onnx.get("file_bytes"),
        )
    ratios = data.get("throughput_ratio") or {}
    return MlperfSummary(
        path=path,
        stage_key=data.get("stage_key"),
        profile=(data.get("settings") or {}).get("profile"),
        variants=variants,
        throughput_ratio=ratios.get("pruned_over_dense"),
        int8_throughput_ratio=ratios.get("pruned_int8_over_dense_int8"),
        mac_ideal_ratio=ratios.get("ideal_from_macs"),
        provenance=data.get("provenance"),
    )


def lookup(data: Any, dotted: str) -> Any:
    """Return the value at a dotted path (`dense.metric.value`); raise KeyError naming the missing part."""
    value = data
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if not isinstance(value, dict) or part not in value:
            raise KeyError(".".join(walked))
        value = value[part]
    return value


class CompareInputs:
    """The outputs of one experiment, each read on first use; a missing file raises MissingInput."""

    def __init__(self, config: ExperimentConfig, paths: ExperimentPaths, expected_root: Path):
        self.config = config
        self.paths = paths
        self.expected_path = expected_results_path(config.name, expected_root)
        self.mlperf_summary_path = paths.mlperf / MLPERF_SUMMARY_FILE

    def make(self, target: str) -> str:
        """Return the make command that writes a target's outputs for this experiment."""
        command = f"make {target} EXPERIMENT={self.config.name}"
        results_root = Path(*self.paths.root.parts[: -len(Path(self.config.name).parts)])
        if results_root != Path("results"):
            command += f" RESULTS={results_root}"
        return command

    def rerun(self, stage: str) -> str:
        """Return the make command that runs `stage` and every later stage again, reusing the earlier ones."""
        return f"{self.make('all')} FORCE={stage}"

    def _record(self, path: Path, target: str) -> dict[str, Any]:
        if not path.is_file():
            raise MissingInput(path, self.make(target))
        record = read_record(path)
        if record is None:
            raise MissingInput(path, self.rerun(target), problem="is not valid JSON")
        return record

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return self._record(self.paths.metrics, "eval")

    @cached_property
    def prune_record(self) -> dict[str, Any]:
        return self._record(self.paths.prune_record, "prune")

    @cached_property
    def pruned_structure(self) -> ModelStructure:
        return measure_model_folder(self.paths.pruned_model, self.make("prune"))

    @cached_property
    def expected(self) -> ExpectedResults:
        return load_expected(self.expected_path)

    def optional_expected(self) -> ExpectedResults | None:
        """Return the expected results, or None when the file is missing or invalid (one row reports that)."""
        try:
            return self.expected
        except (FileNotFoundError, ConfigError):
            return None

    @cached_property
    def mlperf(self) -> MlperfSummary:
        if not self.mlperf_summary_path.is_file():
            raise MissingInput(self.mlperf_summary_path, self.make("mlperf"))
        return read_mlperf_summary(self.mlperf_summary_path)

    def optional_metrics(self) -> dict[str, Any] | None:
        """Return metrics.json, or None when it is missing (the rows that need it report that)."""
        try:
            return self.metrics
        except MissingInput:
            return None

    def variant(self, name: str) -> LoadgenVariant:
        variant = self.mlperf.variants.get(name)
        if variant is None:
            make = self.rerun("mlperf")
            raise MissingInput(self.mlperf_summary_path, make, problem=f"has no variant {name!r}")
        return variant

    def onnx_path(self, variant: str) -> Path:
        """Return the ONNX file that LoadGen ran for a variant: the summary's, else the MLPerf stage's layout."""
        try:
            return self.variant(variant).onnx_file
        except MissingInput:
            source, _, precision = variant.partition("-")
            return MlperfLayout(self.config, self.paths).onnx_model(Variant(source, precision == "int8"))

    def profile(self) -> str:
        """Return the MLPerf profile that ran: the summary's, else the experiment's."""
        try:
            return self.mlperf.profile or self.config.mlperf.profile
        except MissingInput:
            return self.config.mlperf.profile

    def quantity_value(self, path: str) -> Any:
        """Return the output value at an expected-results path; raise KeyError naming the record."""
        root, _, rest = path.partition(".")
        if root == "prune":
            record, name = self.prune_record, "prune.json"
        elif root == "mlperf":
            record, name = self.mlperf.quantities(), str(self.mlperf_summary_path)
        else:
            record, name, rest = self.metrics, "metrics.json", path
        try:
            return lookup(record, rest)
        except KeyError as error:
            raise KeyError(f"{name} has no key {error.args[0]}") from None
