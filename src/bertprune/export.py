"""ONNX export of dense and sliced models, with the checks that make an export trustworthy.

`torch.onnx.export` (the dynamo exporter of torch 2.13) writes a small `<name>.onnx` graph and
the weights to `<name>.onnx.data` beside it. Both axes of every input (batch and sequence) are
dynamic, so the MLPerf harness can run batches trimmed to their longest sample.

Input and output names follow MLPerf Inference BERT: question answering takes `input_ids`,
`input_mask`, `segment_ids` (the fp32 reference model, `mlperf_fp32`) or `input_ids`,
`attention_mask`, `token_type_ids` (the int8 reference model, `mlperf_int8`) and returns
`start_logits` and `end_logits`. Classification and regression take `input_ids`,
`attention_mask` and `token_type_ids` and return `logits`. A model whose forward has no
`token_type_ids` (DistilBERT) is exported without that input.

The graph is exported without the exporter's ONNX optimizer, because that optimizer merges
initializers with equal values (the zero biases of a freshly initialised model, for example),
and the initializers must stay one-to-one with the PyTorch parameters to count them. ONNX
Runtime applies its own graph optimizations when it loads the model.
"""

from __future__ import annotations

import inspect
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from bertprune.mlperf.qsl import MODEL_INPUTS, SampleSet, onnx_input_names
from bertprune.mlperf.sut import create_session

logger = logging.getLogger(__name__)

# Buffers (BERT's position_ids, for example) may become initializers too, so their elements are
# allowed on top of the parameters. Beyond that an export may differ by this fraction of the
# parameters, which covers a few small tensors that the exporter adds or merges. One BERT-base
# attention head is about 0.2% of its parameters, so a wrong model is still caught.
PARAMETER_COUNT_RELATIVE_TOLERANCE = 1e-4

QUESTION_ANSWERING_OUTPUTS = ("start_logits", "end_logits")
CLASSIFICATION_OUTPUTS = ("logits",)

# Shape of the example inputs that torch.export traces. A size of 1 would be specialised to a
# constant, so both axes start above 1.
EXAMPLE_BATCH_SIZE = 2
EXAMPLE_SEQUENCE_LENGTH = 16


class ExportMismatchError(ValueError):
    """An ONNX export whose weights do not match the model it claims to be."""


@dataclass
class ExportReport:
    """The checks of one ONNX file: size, parameter count and agreement with PyTorch."""

    path: str
    parameter_count: int
    file_bytes: int
    torch_parameter_count: int
    max_abs_diff: float
    compared_samples: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _ExportWrapper(nn.Module):
    """Calls a Hugging Face model with positional inputs and returns plain tensors."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...], question_answering: bool):
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.question_answering = question_answering

    def forward(self, *inputs: torch.Tensor):
        output = self.model(**dict(zip(self.input_names, inputs)))
        if self.question_answering:
            return output.start_logits, output.end_logits
        return output.logits


def model_input_names(model: nn.Module) -> tuple[str, ...]:
    """Return the Hugging Face input names that the model's forward accepts, in MODEL_INPUTS order."""
    accepted = inspect.signature(model.forward).parameters
    names = tuple(name for name in MODEL_INPUTS if name in accepted)
    if names[:2] != ("input_ids", "attention_mask"):
        raise ValueError(f"{type(model).__name__}.forward lacks input_ids or attention_mask; it cannot be exported")
    return names


def output_names(task_kind: str) -> tuple[str, ...]:
    return QUESTION_ANSWERING_OUTPUTS if task_kind == "question_answering" else CLASSIFICATION_OUTPUTS


def _example_inputs(model: nn.Module, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    shape = (EXAMPLE_BATCH_SIZE, EXAMPLE_SEQUENCE_LENGTH)
    vocab_size = int(model.config.vocab_size)
    input_ids = torch.randint(1, vocab_size, shape, generator=generator)
    # The second row is padded, so the traced graph contains the padding mask.
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[1, shape[1] // 2 :] = 0
    token_type_ids = torch.zeros(shape, dtype=torch.long)
    token_type_ids[:, shape[1] // 4 :] = 1
    by_name = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    return tuple(by_name[name] for name in names)


def export_onnx(model: nn.Module, path: str | Path, *, task_kind: str, input_names: str = "mlperf_fp32") -> Path:
    """Export a model to `path` (plus `path.data`) with dynamic batch and sequence axes.

    `input_names` is `mlperf_fp32` or `mlperf_int8` and only renames question-answering inputs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    question_answering = task_kind == "question_answering"
    names = model_input_names(model)
    onnx_names = onnx_input_names(names, input_names if question_answering else "mlperf_int8")
    wrapper = _ExportWrapper(model.eval(), names, question_answering).eval()
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=_max_positions(model))
    # The wrapper takes *inputs, so the specification is one tuple holding one entry per input.
    dynamic_shapes = (tuple({0: batch, 1: sequence} for _ in names),)

    logger.info("exporting %s to %s with inputs %s", type(model).__name__, path, ", ".join(onnx_names))
    with torch.no_grad(), warnings.catch_warnings():
        # Every input shares the two Dim objects, and the exporter warns once per repeated name.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        torch.onnx.export(
            wrapper,
            _example_inputs(model, names),
            str(path),
            input_names=list(onnx_names),
            output_names=list(output_names(task_kind)),
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=True,
            optimize=False,
            verbose=False,
        )
    return path


def _max_positions(model: nn.Module) -> int:
    return int(getattr(model.config, "max_position_embeddings", 512))


def onnx_data_files(path: str | Path) -> list[Path]:
    """Return the `.onnx` file and every external data file that it references."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(entries["location"])
    return [path] + [path.parent / location for location in sorted(locations)]


def onnx_file_bytes(path: str | Path) -> int:
    """Return the bytes of the `.onnx` file and its external data together."""
    return sum(file.stat().st_size for file in onnx_data_files(path))


def onnx_parameter_count(path: str | Path) -> int:
    """Return the number of elements in all initializers, with the external data loaded."""
    model = onnx.load(str(path), load_external_data=True)
    return sum(math.prod(tensor.dims) for tensor in model.graph.initializer)


def torch_parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def parameter_count_tolerance(model: nn.Module) -> int:
    """Return how many initializer elements an export of `model` may differ from its parameter count."""
    buffers = sum(buffer.numel() for buffer in model.buffers())
    return buffers + int(PARAMETER_COUNT_RELATIVE_TOLERANCE * torch_parameter_count(model))


def check_parameter_count(onnx_count: int, model: nn.Module, label: str) -> None:
    """Raise ExportMismatchError when the ONNX initializers do not hold the model's parameters."""
    expected = torch_parameter_count(model)
    tolerance = parameter_count_tolerance(model)
    if abs(onnx_count - expected) > tolerance:
        raise ExportMismatchError(
            f"the {label} ONNX export has {onnx_count:,} initializer elements but the PyTorch model has "
            f"{expected:,} parameters (tolerance {tolerance:,}): the export does not match the model; "
            "export it again with --force"
        )


def check_pruned_smaller(pruned_count: int, dense_count: int, artifact: str = "ONNX export") -> None:
    """Raise ExportMismatchError when the pruned `artifact` (model or export) is not smaller than the dense one."""
    if pruned_count >= dense_count:
        raise ExportMismatchError(
            f"the pruned {artifact} has {pruned_count:,} parameters, not fewer than the dense {artifact}'s "
            f"{dense_count:,}: it is an unpruned model; run `make prune` so that the pruned folder contains "
            "the sliced model"
        )


def max_abs_difference(
    model: nn.Module,
    path: str | Path,
    samples: SampleSet,
    *,
    num_samples: int = 32,
    batch_size: int = 8,
) -> tuple[float, int]:
    """Return the largest absolute output difference between ONNX Runtime and PyTorch, and the sample count.

    The first `num_samples` samples are compared in batches, at their full padded length.
    """
    session = create_session(path)
    names = model_input_names(model)
    onnx_names = [item.name for item in session.get_inputs()]
    count = min(num_samples, len(samples))
    worst = 0.0
    model.eval()
    for start in range(0, count, batch_size):
        index = np.arange(start, min(start + batch_size, count))
        feed = samples.feed(onnx_names, index)
        onnx_outputs = session.run(None, feed)
        with torch.no_grad():
            result = model(**{name: torch.from_numpy(samples.inputs[name][index]) for name in names})
        if getattr(result, "logits", None) is not None:
            torch_outputs = [result.logits]
        else:
            torch_outputs = [result.start_logits, result.end_logits]
        for onnx_output, torch_output in zip(onnx_outputs, torch_outputs):
            worst = max(worst, float(np.abs(onnx_output - torch_output.float().numpy()).max()))
    return worst, count


def measure_export(model: nn.Module, path: str | Path, samples: SampleSet, **compare: int) -> ExportReport:
    """Count an export's parameters and bytes and compare its outputs with the PyTorch model."""
    difference, compared = max_abs_difference(model, path, samples, **compare)
    report = ExportReport(
        path=str(path),
        parameter_count=onnx_parameter_count(path),
        file_bytes=onnx_file_bytes(path),
        torch_parameter_count=torch_parameter_count(model),
        max_abs_diff=difference,
        compared_samples=compared,
    )
    logger.info(
        "%s: %s parameters, %s bytes, ONNX Runtime vs PyTorch max abs diff %.3g on %d samples",
        path,
        f"{report.parameter_count:,}",
        f"{report.file_bytes:,}",
        difference,
        compared,
    )
    return report


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Write a dynamically quantized copy (int8 weights, QInt8) of an fp32 export.

    ONNX Runtime's pre-processing first folds the exported Transpose of each weight into a
    constant, because quantize_dynamic only quantizes a MatMul whose weight is an initializer.
    """
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    root_logger = logging.getLogger()
    root_level = root_logger.level
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = int8_path.with_name(int8_path.stem + ".prepared.onnx")
    prepared_data = prepared.name + ".data"
    # onnxruntime.quantization logs every tensor it skips (the int64 and bool ones) through the
    # root logger, so the root level is raised while it runs. The quantized model's outputs are
    # compared with PyTorch afterwards, which catches a quantization that went wrong.
    root_logger.setLevel(logging.ERROR)
    try:
        quant_pre_process(
            str(fp32_path),
            str(prepared),
            skip_symbolic_shape=True,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            external_data_location=prepared_data,
        )
        quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        root_logger.setLevel(root_level)
        prepared.unlink(missing_ok=True)
        (prepared.parent / prepared_data).unlink(missing_ok=True)
    logger.info("quantized %s to int8 weights in %s", fp32_path, int8_path)
    return int8_path
