"""The compare stage: check an experiment's outputs against its expected results and against each other.

`make compare` always runs (it has no stage key) and writes `compare.md` and `compare.json`
beside the outputs. One row per check, each PASS, FAIL or SKIPPED:

- the expected-results file is valid and belongs to this experiment and constraint;
- every quantity of `expected_results/<experiment>.yaml` (dense and pruned metric, metric drop...);
- kept encoder MACs are within the constraint plus one neuron of rounding;
- the pruned PyTorch model and the pruned ONNX file are smaller than dense, measured from their
  tensors (an output with the dense model's size is reported as unpruned, by name);
- masked vs sliced and ONNX Runtime vs PyTorch outputs agree within bounds;
- the ONNX files are the ones LoadGen ran, the runs are VALID (full profile only), LoadGen's
  accuracy-mode metric equals the eval metric, and the pruned model's throughput relative to the
  dense model's is at least its bound;
- provenance is recorded, and the pruned model is still the one that was evaluated.

A missing input fails the rows that need it, with the file and the make target that writes it.
A row whose input belongs to a stage that this experiment does not run (the int8 variants when
`mlperf.int8` is false) is SKIPPED with the reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from tabulate import tabulate

from bertprune.compare_inputs import CompareInputs, MissingInput, ModelStructure, measure_onnx
from bertprune.config import ConfigError, ExperimentConfig
from bertprune.experiment import ExperimentPaths, eval_key, prune_key
from bertprune.expected import DEFAULT_EXPECTED_ROOT, Quantity, Source
from bertprune.export import onnx_data_files
from bertprune.mlperf.harness import read_summary
from bertprune.mlperf.run import mlperf_key
from bertprune.models import load_pruned_model
from bertprune.provenance import atomic_write_json, atomic_write_text, provenance, sha256_file, sha256_tree

logger = logging.getLogger(__name__)

COMPARE_FORMAT = 1
PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"

FP32_VARIANTS = ("dense", "pruned")
INT8_VARIANTS = ("dense-int8", "pruned-int8")

# Default bounds. An expected-results quantity with the same path replaces the default.
DEFAULT_SOURCE = Source(kind=None, reference="bertprune default bound")
MASKED_VS_SLICED = "sanity.masked_vs_sliced_max_abs_diff"
DEFAULT_BOUNDS = {
    # Folding the scales into the weights only reorders fp32 sums: differences are about 1e-5.
    MASKED_VS_SLICED: Quantity(value=1e-4, direction="at_most", source="default"),
    # A pruned model that runs no faster than the dense one suggests that the exported graph
    # still computes the dense model.
    "mlperf.throughput_ratio": Quantity(value=1.0, direction="at_least", source="default"),
    "mlperf.int8_throughput_ratio": Quantity(value=1.0, direction="at_least", source="default"),
    **{
        f"mlperf.{variant}.onnx_vs_pytorch_max_abs_diff": Quantity(value=1e-3, direction="at_most", source="default")
        for variant in FP32_VARIANTS
    },
}
# Quantities that a built-in check reads; an expected-results file may set their bounds.
BUILT_IN_QUANTITIES = set(DEFAULT_BOUNDS) | {
    f"mlperf.{variant}.onnx_vs_pytorch_max_abs_diff" for variant in INT8_VARIANTS
}
# LoadGen's accuracy-mode metric must repeat the eval stage's metric of the same fp32 model, in
# points. The margin allows ONNX Runtime vs PyTorch rounding to flip a prediction or two.
LOADGEN_VS_EVAL_POINTS = 0.05
# An int8 variant must reach 99% of its fp32 model's eval metric (MLPerf's bert-99 rule).
INT8_ACCURACY_FRACTION = 0.99
# Relative tolerance when two records report the same number.
SAME_NUMBER_RELATIVE = 1e-6
LOADGEN_CONDITIONS = ("min_duration_satisfied", "min_queries_satisfied", "early_stopping_satisfied")

Check = Callable[[], list["Row"]]


@dataclass
class Row:
    """One check of the comparison; `value` is the observed number when there is one."""

    check: str
    status: str
    observed: str = ""
    expected: str = ""
    detail: str = ""
    value: float | None = None


def format_number(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 1e-2:
        return f"{value:.2g}"
    return f"{value:.4g}"


def same_number(first: float, second: float) -> bool:
    return math.isclose(first, second, rel_tol=SAME_NUMBER_RELATIVE, abs_tol=1e-12)


def bound_for(inputs: CompareInputs, path: str) -> tuple[Quantity, Source] | None:
    """Return the expected-results quantity at `path` with its source, else its default bound, else None."""
    expected = inputs.optional_expected()
    if expected is not None and path in expected.quantities:
        quantity = expected.quantities[path]
        return quantity, expected.source_of(quantity)
    if path in DEFAULT_BOUNDS:
        return DEFAULT_BOUNDS[path], DEFAULT_SOURCE
    return None


def describe_source(source: Source, quantity: Quantity | None = None) -> str:
    """Return a short label of a number's source; its full reference is in the expected-results file."""
    text = source.reference if source.kind is None else source.kind
    details = []
    if source.seeds:
        details.append("seeds " + ", ".join(str(seed) for seed in source.seeds))
    if source.date:
        details.append(source.date)
    if details:
        text += f" ({'; '.join(details)})"
    if quantity is not None and quantity.note:
        text += f"; {quantity.note}"
    return text


def bound_row(check: str, observed: float | None, quantity: Quantity, source: Source, detail: str = "") -> Row:
    """Return the row of a number checked against a bound."""
    parts = [text for text in (detail, describe_source(source, quantity)) if text]
    if observed is None:
        return Row(check, FAIL, "missing", quantity.describe(), "; ".join(["no value recorded"] + parts))
    status = PASS if quantity.holds(float(observed)) else FAIL
    return Row(check, status, format_number(observed), quantity.describe(), "; ".join(parts), value=float(observed))


# ---------------------------------------------------------------------------------------------
# Expected results and records
# ---------------------------------------------------------------------------------------------


def _other_constraint(inputs: CompareInputs) -> float | None:
    """Return the expected results' constraint when it differs from the experiment's, else None."""
    expected = inputs.expected
    if expected.constraint is None or same_number(expected.constraint, inputs.config.prune.constraint):
        return None
    return expected.constraint


def check_expected_file(inputs: CompareInputs) -> list[Row]:
    check = "expected results"
    path = str(inputs.expected_path)
    try:
        expected = inputs.expected
    except ConfigError as error:
        return [Row(check, FAIL, path, detail=str(error))]
    problems = []
    if expected.experiment != inputs.config.name:
        problems.append(f"{path} is for experiment {expected.experiment!r}, not {inputs.config.name!r}")
    other = _other_constraint(inputs)
    if other is not None:
        problems.append(
            f"{path} holds numbers for constraint {other}, but the experiment runs "
            f"{inputs.config.prune.constraint} (a --set prune.constraint override?)"
        )
    if problems:
        return [Row(check, FAIL, path, detail="; ".join(problems))]
    kinds = ", ".join(sorted({source.kind for source in expected.sources.values()})) or "no sources"
    return [Row(check, PASS, path, detail=f"{len(expected.quantities)} quantities from {kinds}")]


def _quantity_row(inputs: CompareInputs, path: str, quantity: Quantity) -> Row:
    expected = inputs.expected
    try:
        observed = inputs.quantity_value(path)
        metric_name = None
        if path.endswith("metric.value"):
            metric_name = inputs.quantity_value(path.removesuffix(".value") + ".name")
    except KeyError as error:
        return Row(path, FAIL, "missing", quantity.describe(), error.args[0])
    except MissingInput as error:
        return Row(path, FAIL, "missing", quantity.describe(), str(error))
    if metric_name is not None and expected.metric is not None and metric_name != expected.metric:
        detail = f"the output's metric is {metric_name}, the expected results are for {expected.metric}"
        return Row(path, FAIL, format_number(observed), quantity.describe(), detail)
    if not isinstance(observed, (int, float)) or isinstance(observed, bool):
        return Row(path, FAIL, str(observed), quantity.describe(), "the output value is not a number")
    return bound_row(path, observed, quantity, expected.source_of(quantity))


def check_expected_quantities(inputs: CompareInputs) -> list[Row]:
    expected = inputs.optional_expected()
    if expected is None:
        return []  # the "expected results" row reports why
    rows = []
    for path, quantity in expected.quantities.items():
        if path in BUILT_IN_QUANTITIES:
            continue  # the built-in check of this quantity applies the file's bound
        if _other_constraint(inputs) is not None:
            detail = "the expected results are for another constraint"
            rows.append(Row(path, SKIPPED, expected=quantity.describe(), detail=detail))
        else:
            rows.append(_quantity_row(inputs, path, quantity))
    return rows


def check_stage_keys(inputs: CompareInputs) -> list[Row]:
    """The records must come from the current experiment file, with the same --set overrides."""
    check = "outputs match the experiment"
    problems = []
    if inputs.prune_record.get("stage_key") != prune_key(inputs.config):
        problems.append(f"{inputs.paths.prune_record} was made from other inputs; run `{inputs.make('prune')}`")
    if inputs.metrics.get("stage_key") != eval_key(inputs.config):
        problems.append(f"{inputs.paths.metrics} was made from other inputs; run `{inputs.make('eval')}`")
    checked = "prune.json and metrics.json"
    if inputs.mlperf_summary_path.is_file():
        checked = "prune.json, metrics.json and the MLPerf summary"
        if inputs.mlperf.stage_key != mlperf_key(inputs.config):
            problems.append(f"{inputs.mlperf_summary_path} was made from other inputs; run `{inputs.make('mlperf')}`")
    if problems:
        return [Row(check, FAIL, detail="; ".join(problems))]
    return [Row(check, PASS, detail=f"{checked} have the stage keys of this experiment file")]


# ---------------------------------------------------------------------------------------------
# The pruned PyTorch model
# ---------------------------------------------------------------------------------------------


def check_kept_macs(inputs: CompareInputs) -> list[Row]:
    check = "kept MACs within constraint"
    record, structure = inputs.prune_record, inputs.pruned_structure
    dense_macs = record["dense_encoder_macs"]
    head_macs = sum(structure.heads_per_layer) * record["mac_per_head"]
    neuron_macs = sum(structure.neurons_per_layer) * record["mac_per_neuron"]
    kept = (head_macs + neuron_macs) / dense_macs
    constraint = inputs.config.prune.constraint
    one_neuron = record["mac_per_neuron"] / dense_macs
    bound = Quantity(value=constraint + one_neuron, direction="at_most", source="constraint")
    metrics = inputs.optional_metrics()
    if metrics is not None and not math.isclose(metrics["kept_mac_fraction"], kept, rel_tol=1e-9):
        detail = (
            f"metrics.json reports {metrics['kept_mac_fraction']:.4g} but the pruned model's weights give "
            f"{kept:.4g}, so metrics.json describes another model; run `{inputs.rerun('eval')}`"
        )
        return [Row(check, FAIL, format_number(kept), bound.describe(), detail, value=kept)]
    detail = (
        f"from the weight shapes in {inputs.paths.pruned_model}; "
        f"constraint {constraint} plus one neuron ({one_neuron:.2g})"
    )
    status = PASS if bound.holds(kept) else FAIL
    return [Row(check, status, format_number(kept), bound.describe(), detail, value=kept)]


def _as_many(count: int, dense_count: int) -> str:
    """Return the comparison in the message about an unpruned output."""
    return "as many parameters as" if count == dense_count else "more parameters than"


def _per_layer(values: list[int], of: int) -> str:
    return f"[{', '.join(str(value) for value in values)}] of {of}"


def _pruned_model_problems(inputs: CompareInputs, structure: ModelStructure) -> list[str]:
    """Return how pruning.json, metrics.json and load_pruned_model disagree with the weights."""
    spec = structure.pruning_spec or {}
    problems = []
    listed_heads = [len(heads) for heads in spec.get("heads", [])]
    if listed_heads != structure.heads_per_layer:
        problems.append(
            f"pruning.json lists heads per layer {listed_heads} but model.safetensors holds {structure.heads_per_layer}"
        )
    listed_neurons = spec.get("neurons_per_layer")
    if listed_neurons != structure.neurons_per_layer:
        problems.append(
            f"pruning.json lists neurons per layer {listed_neurons} "
            f"but model.safetensors holds {structure.neurons_per_layer}"
        )
    metrics = inputs.optional_metrics()
    if metrics is not None:
        recorded = (metrics["pruned"]["heads_per_layer"], metrics["pruned"]["neurons_per_layer"])
        if recorded != (structure.heads_per_layer, structure.neurons_per_layer):
            make = inputs.rerun("eval")
            problems.append(f"metrics.json describes other kept units than the model holds; run `{make}`")
    try:
        load_pruned_model(structure.folder)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        problems.append(f"load_pruned_model({structure.folder}) failed: {error}")
    return problems


def check_pytorch_smaller(inputs: CompareInputs) -> list[Row]:
    check = "pruned PyTorch model smaller than dense"
    structure, folder = inputs.pruned_structure, inputs.paths.pruned_model
    kept, dense = structure.encoder_parameters, structure.dense_encoder_parameters
    observed = f"{kept:,} of {dense:,}"
    expected = "fewer encoder parameters"
    layers = (
        f"heads per layer {_per_layer(structure.heads_per_layer, structure.num_heads)}, "
        f"neurons per layer {_per_layer(structure.neurons_per_layer, structure.intermediate_size)}"
    )
    if inputs.config.prune.constraint >= 1:
        return [Row(check, SKIPPED, observed, expected, "constraint 1.0 keeps every head and neuron")]
    if structure.is_unpruned or kept >= dense:
        detail = (
            f"{folder} is unpruned: it has {_as_many(kept, dense)} the dense model "
            f"({kept:,} encoder parameters; {layers})"
        )
        return [Row(check, FAIL, f"UNPRUNED: {observed}", expected, detail)]
    if not structure.has_pruning_file:
        detail = f"{folder}/pruning.json not found: the folder was not written by `{inputs.make('prune')}`"
        return [Row(check, FAIL, observed, expected, detail)]
    problems = _pruned_model_problems(inputs, structure)
    if problems:
        return [Row(check, FAIL, observed, expected, "; ".join(problems))]
    detail = f"{100 * kept / dense:.1f}% of the encoder parameters; {layers}"
    return [Row(check, PASS, observed, expected, detail, value=kept / dense)]


def check_pruned_model_hash(inputs: CompareInputs) -> list[Row]:
    check = "pruned model is the one evaluated"
    recorded = inputs.metrics.get("provenance", {}).get("inputs_sha256", {}).get("pruned_model")
    if recorded is None:
        detail = f"metrics.json records no pruned_model hash; run `{inputs.rerun('eval')}`"
        return [Row(check, FAIL, detail=detail)]
    current = sha256_tree(inputs.paths.pruned_model)
    if current != recorded:
        detail = (
            f"{inputs.paths.pruned_model} changed after evaluation (its sha256 differs from the one in "
            f"metrics.json); run `{inputs.rerun('prune')}`"
        )
        return [Row(check, FAIL, current[:12], recorded[:12], detail)]
    detail = "sha256 of the pruned folder equals the one in metrics.json"
    return [Row(check, PASS, current[:12], recorded[:12], detail)]


def check_masked_vs_sliced(inputs: CompareInputs) -> list[Row]:
    value = inputs.metrics.get("sanity", {}).get("masked_vs_sliced_max_abs_diff")
    return [bound_row("masked vs sliced max abs diff", value, *bound_for(inputs, MASKED_VS_SLICED), "from metrics.json")]


# ---------------------------------------------------------------------------------------------
# ONNX files and LoadGen runs
# ---------------------------------------------------------------------------------------------


def _export_mismatches(inputs: CompareInputs, dense, pruned) -> list[str]:
    """Return the fp32 ONNX files whose parameter count differs from their PyTorch model's.

    The export keeps the initializers one to one with the model's parameters, plus buffers, so
    the pruned file must hold as many as the pruned folder and the dense file as many as the
    dense architecture.
    """
    structure = inputs.pruned_structure
    allowed = structure.buffer_elements + int(1e-4 * structure.dense_total_parameters)
    problems = []
    for onnx_file, parameters, model in (
        (pruned, structure.total_parameters, str(inputs.paths.pruned_model)),
        (dense, structure.dense_total_parameters, "the dense model"),
    ):
        if abs(onnx_file.parameters - parameters) > allowed:
            problems.append(
                f"{onnx_file.path} has {onnx_file.parameters:,} parameters but {model} has {parameters:,}, so it is "
                f"not an export of that model; run `{inputs.rerun('mlperf')}`"
            )
    return problems


def _onnx_pair_rows(inputs: CompareInputs, dense_name: str, pruned_name: str) -> list[Row]:
    check = f"{pruned_name} ONNX smaller than {dense_name}"
    dense = measure_onnx(inputs.onnx_path(dense_name), inputs.make("mlperf"))
    pruned = measure_onnx(inputs.onnx_path(pruned_name), inputs.make("mlperf"))
    observed = f"{pruned.parameters:,} of {dense.parameters:,} parameters"
    expected = "fewer parameters and bytes"
    if inputs.config.prune.constraint >= 1:
        return [Row(check, SKIPPED, observed, expected, "constraint 1.0 keeps every head and neuron")]
    if pruned.parameters >= dense.parameters:
        detail = (
            f"{pruned.path} is unpruned: it has {_as_many(pruned.parameters, dense.parameters)} "
            f"the dense model's ONNX file {dense.path} ({pruned.parameters:,} vs {dense.parameters:,})"
        )
        return [Row(check, FAIL, f"UNPRUNED: {observed}", expected, detail)]
    problems = []
    if pruned.bytes >= dense.bytes:
        problems.append(
            f"{pruned.path} and its external data take {pruned.bytes:,} bytes, not fewer than the dense "
            f"model's {dense.bytes:,}"
        )
    if pruned_name == "pruned":
        problems += _export_mismatches(inputs, dense, pruned)
    detail = "; ".join(problems) or f"{pruned.bytes:,} of {dense.bytes:,} bytes including external data"
    status = FAIL if problems else PASS
    return [Row(check, status, observed, expected, detail, value=pruned.parameters / dense.parameters)]


def check_onnx_unchanged(inputs: CompareInputs, variant: str) -> list[Row]:
    """The ONNX files must be the ones that the MLPerf stage exported, hashed and ran under LoadGen."""
    check = f"ONNX file is the one LoadGen ran ({variant})"
    entry = inputs.variant(variant)
    if not entry.onnx_sha256:
        return [Row(check, FAIL, detail=f"{inputs.mlperf_summary_path} records no sha256 of the {variant} ONNX files")]
    if not entry.onnx_file.is_file():
        raise MissingInput(entry.onnx_file, inputs.make("mlperf"))
    changed = []
    for file in onnx_data_files(entry.onnx_file):
        if not file.is_file() or entry.onnx_sha256.get(file.name) != sha256_file(file):
            changed.append(file.name)
    if changed:
        detail = (
            f"{', '.join(changed)} in {entry.onnx_file.parent} differ from the files that LoadGen ran "
            f"(sha256 in the MLPerf summary); run `{inputs.rerun('mlperf')}`"
        )
        return [Row(check, FAIL, "changed", detail=detail)]
    detail = f"sha256 of {entry.onnx_file} and its external data match the MLPerf summary"
    return [Row(check, PASS, "unchanged", detail=detail)]


def check_onnx_vs_pytorch(inputs: CompareInputs, variant: str) -> list[Row]:
    check = f"ONNX vs PyTorch max abs diff ({variant})"
    bound = bound_for(inputs, f"mlperf.{variant}.onnx_vs_pytorch_max_abs_diff")
    if bound is None:
        detail = "int8 outputs differ from fp32 PyTorch by the quantization error; the LoadGen accuracy row checks int8"
        return [Row(check, SKIPPED, detail=detail)]
    value = inputs.variant(variant).onnx_vs_pytorch_max_abs_diff
    return [bound_row(check, value, *bound, "from the MLPerf summary")]


def _loadgen_log(inputs: CompareInputs, variant: str) -> dict[str, Any]:
    path = inputs.variant(variant).log_summary
    if not path.is_file():
        raise MissingInput(path, inputs.make("mlperf"))
    return read_summary(path)


def check_loadgen_valid(inputs: CompareInputs, variant: str) -> list[Row]:
    check = f"LoadGen result VALID ({variant})"
    entry = inputs.variant(variant)
    log = _loadgen_log(inputs, variant)
    result = str(log["result"])
    if entry.validity is not None and entry.validity != result:
        detail = f"the MLPerf summary reports {entry.validity} but {entry.log_summary} reports {result}"
        return [Row(check, FAIL, result, "VALID", detail)]
    if inputs.profile() != "full":
        detail = (
            f"profile {inputs.profile()}: the run is shorter than a submission run, so validity is checked "
            "only with mlperf.profile: full"
        )
        return [Row(check, SKIPPED, result, "VALID", detail)]
    if result != "VALID":
        unmet = [condition for condition in LOADGEN_CONDITIONS if log.get(condition) is False]
        reason = f" (not satisfied: {', '.join(unmet)})" if unmet else ""
        return [Row(check, FAIL, result, "VALID", f"{entry.log_summary} reports {result}{reason}")]
    return [Row(check, PASS, result, "VALID", str(entry.log_summary))]


def check_loadgen_accuracy(inputs: CompareInputs, variant: str) -> list[Row]:
    check = f"LoadGen accuracy = eval metric ({variant})"
    entry = inputs.variant(variant)
    eval_value = inputs.metrics[variant.removesuffix("-int8")]["metric"]["value"]
    if entry.accuracy_metric is None:
        detail = f"{inputs.mlperf_summary_path} has no accuracy-mode metric for {variant}"
        return [Row(check, FAIL, "missing", format_number(eval_value), detail)]
    if entry.eval_metric is not None and not same_number(entry.eval_metric, eval_value):
        detail = (
            f"the MLPerf summary compares with eval metric {entry.eval_metric:.4g}, metrics.json has "
            f"{eval_value:.4g}; run `{inputs.rerun('mlperf')}`"
        )
        return [Row(check, FAIL, format_number(entry.accuracy_metric), format_number(eval_value), detail)]
    if variant in INT8_VARIANTS:
        tolerance = 1 - INT8_ACCURACY_FRACTION
        quantity = Quantity(value=eval_value, direction="at_least", relative_tolerance=tolerance, source="eval")
        detail = f"int8 must reach {INT8_ACCURACY_FRACTION:.0%} of the fp32 eval metric (MLPerf's bert-99 rule)"
    else:
        tolerance = LOADGEN_VS_EVAL_POINTS
        quantity = Quantity(value=eval_value, direction="within", absolute_tolerance=tolerance, source="eval")
        detail = "accuracy-mode metric vs the eval stage's metric of the same model, in points"
    return [bound_row(check, entry.accuracy_metric, quantity, DEFAULT_SOURCE, detail)]


def _throughput_rows(inputs: CompareInputs, dense_name: str, pruned_name: str, path: str) -> list[Row]:
    check = f"throughput {pruned_name} / {dense_name}"
    speeds = {}
    for name in (dense_name, pruned_name):
        entry = inputs.variant(name)
        logged = _loadgen_log(inputs, name)["samples_per_second"]
        if logged is None:
            return [Row(check, FAIL, detail=f"{entry.log_summary} has no 'Samples per second' line")]
        if entry.samples_per_second is not None and not same_number(entry.samples_per_second, logged):
            detail = (
                f"the MLPerf summary reports {entry.samples_per_second:.4g} samples/s for {name}, "
                f"its LoadGen log reports {logged:.4g}"
            )
            return [Row(check, FAIL, detail=detail)]
        speeds[name] = logged
    ratio = speeds[pruned_name] / speeds[dense_name]
    summary_ratio = inputs.mlperf.quantities().get(path.removeprefix("mlperf."))
    if summary_ratio is not None and not math.isclose(summary_ratio, ratio, rel_tol=1e-3):
        detail = f"the MLPerf summary reports a ratio of {summary_ratio:.4g}, its LoadGen logs give {ratio:.4g}"
        return [Row(check, FAIL, format_number(ratio), detail=detail)]
    detail = f"pruned {speeds[pruned_name]:.4g} vs dense {speeds[dense_name]:.4g} samples/s"
    if inputs.mlperf.mac_ideal_ratio is not None:
        detail += f"; MAC-ideal ratio {inputs.mlperf.mac_ideal_ratio:.3g}"
    return [bound_row(check, ratio, *bound_for(inputs, path), detail)]


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def _provenance_problems(name: str, block: Any) -> list[str]:
    if not isinstance(block, dict):
        return [f"{name} has no provenance"]
    problems = []
    commit = block.get("git_commit")
    if not commit or str(commit).startswith("unknown"):
        problems.append(f"{name}: git commit unknown ({commit!r})")
    if not block.get("libraries"):
        problems.append(f"{name}: no library versions")
    if not block.get("inputs_sha256"):
        problems.append(f"{name}: no input hashes")
    return problems


def check_provenance(inputs: CompareInputs) -> list[Row]:
    check = "provenance recorded"
    blocks = {"metrics.json": inputs.metrics.get("provenance"), "prune.json": inputs.prune_record.get("provenance")}
    if inputs.mlperf_summary_path.is_file():
        blocks["the MLPerf summary"] = inputs.mlperf.provenance
    problems = [problem for name, block in blocks.items() for problem in _provenance_problems(name, block)]
    if problems:
        return [Row(check, FAIL, detail="; ".join(problems))]
    commit = inputs.metrics["provenance"]["git_commit"]
    observed = commit[:12] + (" (dirty)" if commit.endswith("-dirty") else "")
    return [Row(check, PASS, observed, detail="git commit, library versions and input hashes in " + ", ".join(blocks))]


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


def _mlperf_checks(inputs: CompareInputs, variants: tuple[str, ...]) -> list[tuple[str, Check]]:
    checks: list[tuple[str, Check]] = []
    for make_row, name in (
        (check_onnx_unchanged, "ONNX file is the one LoadGen ran"),
        (check_onnx_vs_pytorch, "ONNX vs PyTorch max abs diff"),
        (check_loadgen_valid, "LoadGen result VALID"),
        (check_loadgen_accuracy, "LoadGen accuracy = eval metric"),
    ):
        for variant in variants:
            checks.append((f"{name} ({variant})", lambda make_row=make_row, variant=variant: make_row(inputs, variant)))
    checks.append(
        ("throughput pruned / dense", lambda: _throughput_rows(inputs, "dense", "pruned", "mlperf.throughput_ratio"))
    )
    if inputs.config.mlperf.int8:
        checks.append(
            (
                "throughput pruned-int8 / dense-int8",
                lambda: _throughput_rows(inputs, "dense-int8", "pruned-int8", "mlperf.int8_throughput_ratio"),
            )
        )
    return checks


def _checks(inputs: CompareInputs) -> list[tuple[str, Check]]:
    """Return (name, check) pairs in table order; the name labels the row when a check cannot run."""
    checks: list[tuple[str, Check]] = [
        ("expected results", lambda: check_expected_file(inputs)),
        ("expected quantities", lambda: check_expected_quantities(inputs)),
        ("outputs match the experiment", lambda: check_stage_keys(inputs)),
        ("kept MACs within constraint", lambda: check_kept_macs(inputs)),
        ("pruned PyTorch model smaller than dense", lambda: check_pytorch_smaller(inputs)),
        ("pruned model is the one evaluated", lambda: check_pruned_model_hash(inputs)),
        ("masked vs sliced max abs diff", lambda: check_masked_vs_sliced(inputs)),
        ("pruned ONNX smaller than dense", lambda: _onnx_pair_rows(inputs, "dense", "pruned")),
    ]
    int8 = inputs.config.mlperf.int8
    if int8:
        checks.append(
            ("pruned-int8 ONNX smaller than dense-int8", lambda: _onnx_pair_rows(inputs, "dense-int8", "pruned-int8"))
        )
    if inputs.mlperf_summary_path.is_file():
        checks += _mlperf_checks(inputs, FP32_VARIANTS + (INT8_VARIANTS if int8 else ()))
    else:
        # One row for the whole stage, in place of one identical failure per LoadGen check.
        missing = str(MissingInput(inputs.mlperf_summary_path, inputs.make("mlperf")))
        checks.append(("MLPerf results", lambda: [Row("MLPerf results", FAIL, "missing", detail=missing)]))
    if not int8:
        detail = "mlperf.int8 is false in the experiment, so no int8 models are built"
        checks.append(("int8 variants", lambda: [Row("int8 variants", SKIPPED, detail=detail)]))
    checks.append(("provenance recorded", lambda: check_provenance(inputs)))
    return checks


def collect_rows(inputs: CompareInputs) -> list[Row]:
    """Run every check; a missing or unreadable input fails that check's row with the reason."""
    rows = []
    for name, check in _checks(inputs):
        try:
            rows.extend(check())
        except FileNotFoundError as error:  # MissingInput, or a missing expected-results file
            rows.append(Row(name, FAIL, "missing", detail=str(error)))
        except (OSError, ValueError, KeyError, TypeError) as error:  # ValueError includes ConfigError
            logger.warning("check %r could not read its inputs: %r", name, error)
            rows.append(Row(name, FAIL, detail=f"could not read the inputs: {type(error).__name__}: {error}"))
    return rows


def format_table(rows: list[Row], tablefmt: str, detail_width: int | None = None) -> str:
    table = [[row.check, row.status, row.observed, row.expected, row.detail] for row in rows]
    headers = ["check", "status", "observed", "expected", "detail"]
    widths = [None, None, None, None, detail_width] if detail_width else None
    return tabulate(table, headers=headers, tablefmt=tablefmt, maxcolwidths=widths)


def count_statuses(rows: list[Row]) -> dict[str, int]:
    return {status: sum(row.status == status for row in rows) for status in (PASS, FAIL, SKIPPED)}


def summary_line(experiment: str, rows: list[Row]) -> str:
    counts = count_statuses(rows)
    verdict = PASS if counts[FAIL] == 0 else FAIL
    return f"compare {experiment}: {verdict} ({counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIPPED]} skipped)"


def run_compare(
    config: ExperimentConfig,
    paths: ExperimentPaths,
    force: bool = False,
    expected_root: str | Path = DEFAULT_EXPECTED_ROOT,
) -> dict[str, Any]:
    """Check the outputs, print the table, write compare.md and compare.json, and return the record.

    The stage always runs, so `force` has no effect. `passed` is True only when no row failed.
    """
    del force
    inputs = CompareInputs(config, paths, Path(expected_root))
    logger.info("comparing %s with %s", paths.root, inputs.expected_path)
    rows = collect_rows(inputs)
    line = summary_line(config.name, rows)
    for row in rows:
        if row.status == FAIL:
            logger.error("%s: %s", row.check, row.detail)

    expected_hash = sha256_file(inputs.expected_path) if inputs.expected_path.is_file() else "missing"
    record = {
        "format": COMPARE_FORMAT,
        "experiment": config.name,
        "passed": all(row.status != FAIL for row in rows),
        "counts": count_statuses(rows),
        "expected_results": str(inputs.expected_path),
        "rows": [asdict(row) for row in rows],
        "provenance": provenance({"expected_results": expected_hash}),
    }
    atomic_write_json(paths.compare_record, record)
    markdown = f"# Comparison of {config.name}\n\n{format_table(rows, 'github')}\n\n{line}\n"
    atomic_write_text(paths.compare_report, markdown)
    print(format_table(rows, "simple", detail_width=70))
    print(line)
    logger.info("%s; wrote %s and %s", line, paths.compare_report, paths.compare_record)
    return record
