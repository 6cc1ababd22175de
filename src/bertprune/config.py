"""Typed experiment configuration loaded from YAML.

An experiment file has the sections `model`, `task`, `finetune`, `prune`, `eval` and `mlperf`.
Unknown keys, wrong types and out-of-range values raise ConfigError with one message that names
the key and the fix. The resolved configuration (every default filled in) is saved with each
output.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

GLUE_TASK_NAMES = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
SQUAD_TASK_NAMES = ("squad", "squad_v2")
TASK_NAMES = GLUE_TASK_NAMES + SQUAD_TASK_NAMES + ("tweets",)


class ConfigError(ValueError):
    """An experiment file that cannot be used; the message names the key and the fix."""


@dataclass
class ModelConfig:
    # Hub id, local folder, or package:<module>/<subfolder>.
    source: str = ""
    revision: str | None = None
    # model_to_dataset_labels[i] is the dataset label that the model's output i means; for
    # checkpoints whose label order differs from the dataset's (textattack MNLI, for example).
    model_to_dataset_labels: list[int] | None = None


@dataclass
class TaskConfig:
    name: str = ""
    # GLUE folder as distributed (<data_dir>/<TASK>/train.tsv, dev.tsv); null loads from the hub.
    data_dir: str | None = None
    # SQuAD JSON files, or the tweets CSV; null loads from the hub (SQuAD) or the package (tweets).
    train_file: str | None = None
    dev_file: str | None = None
    max_seq_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    # Only for tweets, which ship without a dev split: the seeded, stratified held-out fraction.
    dev_fraction: float = 0.1
    # Seed of the tweets' dev split and of the max_train_examples subset. It is separate from the
    # experiment seed, so that a sweep over seeds keeps the same data and never evaluates on
    # examples that another seed's fine-tuned model was trained on.
    split_seed: int = 0


@dataclass
class FinetuneConfig:
    enabled: bool = False
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_train_examples: int | None = None
    checkpoint_every_steps: int = 100


@dataclass
class PruneConfig:
    # Fraction of dense encoder MACs that the pruned model may keep.
    constraint: float = 0.5
    num_samples: int = 2048
    batch_size: int = 32
    gradient_mode: Literal["per_batch", "per_example"] = "per_batch"
    rearrange: bool = True
    tune: bool = True
    teacher: Literal["sqrt_constraint", "dense"] = "sqrt_constraint"
    tune_first_layer_attention: bool = False
    cls_only_last_ffn: bool = True
    damping: float = 1.0
    # Sequence length of the MAC model; null computes the average token length of the dev set.
    seq_len: float | None = None


@dataclass
class EvalConfig:
    batch_size: int = 64


@dataclass
class MlperfConfig:
    profile: Literal["quick", "full"] = "quick"
    quick_query_count: int = 512
    # Full profile: length of the calibration run that sets target_qps.
    calibration_seconds: float = 30.0
    batch_size: int = 16
    intra_op_threads: int = 0
    int8: bool = False
    input_names: Literal["mlperf_fp32", "mlperf_int8"] = "mlperf_fp32"
    system_name: str = "cpu-onnxruntime"
    # Cut each length-sorted batch to its longest sample instead of running the full padded length.
    trim_padding: bool = True


@dataclass
class ExperimentConfig:
    name: str = ""
    description: str = ""
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mlperf: MlperfConfig = field(default_factory=MlperfConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def task_kind(self) -> str:
        if self.task.name in SQUAD_TASK_NAMES:
            return "question_answering"
        return "regression" if self.task.name == "stsb" else "classification"


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field's type and return it, converted where YAML is loose (int to float)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{key}: invalid value {value!r}; use {_type_name(annotation)}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(item, item_type, f"{key}[{index}]") for index, item in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return build_section(annotation, value, key)
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a YAML mapping, raising ConfigError that names `prefix.key` on bad input."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'experiment'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; the keys of {prefix or 'the top level'} are {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**values)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: ExperimentConfig) -> None:
    """Raise ConfigError for values that type-check but make no sense."""
    _require(bool(config.model.source), "model.source is missing; give a hub id, a model folder or package:<module>/<folder>")
    _require(
        config.task.name in TASK_NAMES,
        f"task.name: unknown task {config.task.name!r}; use one of {', '.join(TASK_NAMES)}",
    )
    prune, task, finetune = config.prune, config.task, config.finetune
    _require(0 < prune.constraint <= 1, f"prune.constraint must be in (0, 1] (fraction of MACs kept), got {prune.constraint}")
    _require(prune.num_samples > 0, f"prune.num_samples must be a positive number of calibration samples, got {prune.num_samples}")
    _require(prune.batch_size > 0, f"prune.batch_size must be positive, got {prune.batch_size}")
    _require(prune.damping >= 0, f"prune.damping must be >= 0, got {prune.damping}")
    _require(prune.seq_len is None or prune.seq_len > 0, f"prune.seq_len must be positive or null, got {prune.seq_len}")
    _require(8 <= task.max_seq_length <= 4096, f"task.max_seq_length must be in [8, 4096], got {task.max_seq_length}")
    _require(task.doc_stride > 0, f"task.doc_stride must be positive, got {task.doc_stride}")
    _require(
        task.name not in SQUAD_TASK_NAMES or task.max_query_length + 3 < task.max_seq_length,
        f"task.max_query_length ({task.max_query_length}) + 3 must be below task.max_seq_length ({task.max_seq_length})",
    )
    _require(0 < task.dev_fraction < 1, f"task.dev_fraction must be in (0, 1), got {task.dev_fraction}")
    for key in ("max_train_examples", "max_dev_examples"):
        value = getattr(task, key)
        _require(value is None or value > 0, f"task.{key} must be positive or null, got {value}")
    _require(finetune.epochs > 0, f"finetune.epochs must be positive, got {finetune.epochs}")
    _require(finetune.batch_size > 0, f"finetune.batch_size must be positive, got {finetune.batch_size}")
    _require(finetune.learning_rate > 0, f"finetune.learning_rate must be positive, got {finetune.learning_rate}")
    _require(0 <= finetune.warmup_ratio < 1, f"finetune.warmup_ratio must be in [0, 1), got {finetune.warmup_ratio}")
    _require(finetune.checkpoint_every_steps > 0, "finetune.checkpoint_every_steps must be positive")
    _require(config.eval.batch_size > 0, f"eval.batch_size must be positive, got {config.eval.batch_size}")
    _require(config.mlperf.quick_query_count > 0, "mlperf.quick_query_count must be positive")
    _require(config.mlperf.calibration_seconds > 0, "mlperf.calibration_seconds must be positive")
    _require(config.mlperf.batch_size > 0, "mlperf.batch_size must be positive")
    _require(config.mlperf.intra_op_threads >= 0, "mlperf.intra_op_threads must be >= 0 (0 lets ONNX Runtime choose)")
    if config.task.name == "tweets":
        _require(config.task.data_dir is None, "task.data_dir is for GLUE; the tweets task reads task.train_file or the package")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Load and validate an experiment file; `overrides` maps dotted keys to values (e.g. prune.seed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {path} not found; the experiments are in experiments/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for dotted, value in (overrides or {}).items():
        section = data
        *parents, leaf = dotted.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {dotted}: {parent} is not a section")
        section[leaf] = value
    try:
        config = build_section(ExperimentConfig, data, "")
        validate(config)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not config.name:
        config.name = experiment_name(path)
    return config


def experiment_name(path: Path) -> str:
    """Name an experiment by its path below experiments/, e.g. paper/bert-base-sst2-c0.6."""
    resolved = path.resolve()
    for parent in resolved.parents:
        if parent.name == "experiments":
            return str(resolved.relative_to(parent).with_suffix(""))
    return path.stem
