"""Expected results of an experiment: the numbers that `make compare` checks its outputs against.

`expected_results/<experiment>.yaml` names, per quantity, a dotted path into the experiment's
outputs, the expected value, a tolerance, a direction and the source of the number:

```yaml
format: 1
experiment: paper/bert-base-sst2-c0.6
constraint: 0.6          # optional: the prune.constraint these numbers belong to
metric: accuracy         # optional: the task's primary metric name in metrics.json
sources:
  rerun:
    kind: rerun          # paper | rerun (of the authors' code) | measurement (ours)
    reference: Independent rerun of the authors' code, BERT-base, 2048 samples
    seeds: [0]
quantities:
  pruned.metric.value:
    value: 92.32
    direction: within    # within | at_least | at_most
    absolute_tolerance: 1.5
    source: rerun
    note: seed-to-seed spread of the method is 0.5 to 1.5 points
curve:                   # optional: the published metric at other constraints, for sweep plots
  - {constraint: 1.0, value: 93.58, source: rerun}
```

A quantity path starts with a key of metrics.json (`dense`, `pruned`, `metric_drop`,
`kept_mac_fraction`, ...), with `prune.` (prune.json), or with `mlperf.` (the MLPerf summary:
`mlperf.throughput_ratio`, `mlperf.int8_throughput_ratio`, `mlperf.mac_ideal_ratio` and
`mlperf.<variant>.<field>`, see bertprune.compare_inputs.MlperfSummary). A quantity that a
built-in check of `make compare` reads (`sanity.masked_vs_sliced_max_abs_diff`, the throughput
ratios, `mlperf.<variant>.onnx_vs_pytorch_max_abs_diff`) replaces that check's default bound. Unknown keys, wrong types, a missing source and contradictory
tolerances raise ExpectedResultsError with one message that names the key, as experiment files do.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from bertprune.config import ConfigError, build_section

EXPECTED_FORMAT = 1
DEFAULT_EXPECTED_ROOT = Path("expected_results")

# First components of a quantity path: the top-level keys of metrics.json, plus the prune.json
# record and the MLPerf summary.
METRICS_ROOTS = (
    "constraint",
    "seq_len",
    "dense",
    "pruned",
    "kept_mac_fraction",
    "kept_parameter_fraction",
    "metric_drop",
    "pruning_time_seconds",
    "sanity",
)
QUANTITY_ROOTS = METRICS_ROOTS + ("prune", "mlperf")


class ExpectedResultsError(ConfigError):
    """An expected-results file that cannot be used; the message names the key and the fix."""


@dataclass
class Source:
    """The origin of a number: the paper, a rerun of the authors' code, or our own measurement."""

    kind: Literal["paper", "rerun", "measurement"] | None = None
    # Citation or description: paper and table, repository and command, or our make target.
    reference: str = ""
    seeds: list[int] | None = None
    # Required for measurements: the machine, the date (YYYY-MM-DD) and the seeds of the run.
    machine: str | None = None
    date: str | None = None
    command: str | None = None


@dataclass
class Quantity:
    """One expected number: value, direction and tolerance of the check, and the source's name."""

    value: float | None = None
    direction: Literal["within", "at_least", "at_most"] | None = None
    # Exactly one tolerance for `within`; at most one for `at_least` and `at_most` (default 0).
    absolute_tolerance: float | None = None
    relative_tolerance: float | None = None
    source: str = ""
    # Why the tolerance is what it is, or anything else a reader of the comparison needs.
    note: str = ""

    def tolerance(self) -> float:
        """Return the tolerance in the unit of the value."""
        if self.absolute_tolerance is not None:
            return self.absolute_tolerance
        if self.relative_tolerance is not None:
            return self.relative_tolerance * abs(self.value)
        return 0.0

    def holds(self, observed: float) -> bool:
        """Return True when the observed value satisfies this expectation."""
        if not math.isfinite(observed):
            return False
        tolerance = self.tolerance()
        if self.direction == "within":
            return abs(observed - self.value) <= tolerance
        if self.direction == "at_least":
            return observed >= self.value - tolerance
        return observed <= self.value + tolerance

    def describe(self) -> str:
        """Return the bound in words, e.g. `93.58 ± 1.5` or `>= 1.0`."""
        tolerance = self.tolerance()
        if self.direction == "within":
            return f"{self.value:.4g} ± {tolerance:.3g}"
        sign = ">=" if self.direction == "at_least" else "<="
        bound = self.value - tolerance if self.direction == "at_least" else self.value + tolerance
        return f"{sign} {bound:.4g}"


@dataclass
class CurvePoint:
    """The task metric that a source reports at one constraint (1.0 is the dense model)."""

    constraint: float | None = None
    value: float | None = None
    source: str = ""
    note: str = ""


@dataclass
class ExpectedResults:
    """The contents of one expected-results file."""

    format: int = EXPECTED_FORMAT
    experiment: str = ""
    constraint: float | None = None
    metric: str | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    quantities: dict[str, Quantity] = field(default_factory=dict)
    curve: list[CurvePoint] = field(default_factory=list)

    def source_of(self, quantity: Quantity) -> Source:
        return self.sources[quantity.source]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ExpectedResultsError(message)


def _dates_as_text(data: Any) -> Any:
    """Turn YAML dates (an unquoted 2025-01-31) into ISO strings, so both spellings are accepted."""
    if isinstance(data, dict):
        return {key: _dates_as_text(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_dates_as_text(value) for value in data]
    if isinstance(data, (datetime.date, datetime.datetime)):
        return data.isoformat()
    return data


def _mapping(data: Any, key: str) -> dict[str, Any]:
    if data is None:
        return {}
    _require(isinstance(data, dict), f"{key}: expected a mapping of names, got {data!r}")
    for name in data:
        _require(isinstance(name, str) and name, f"{key}: names must be non-empty strings, got {name!r}")
    return data


def _validate_source(name: str, source: Source) -> None:
    key = f"sources[{name}]"
    _require(source.kind is not None, f"{key}.kind is missing; use one of 'paper', 'rerun', 'measurement'")
    _require(
        bool(source.reference), f"{key}.reference is missing; cite the paper, the rerun or the command that measured it"
    )
    if source.kind == "measurement":
        _require(bool(source.machine), f"{key}.machine is missing; a measurement names the machine it ran on")
        _require(bool(source.date), f"{key}.date is missing; a measurement gives its date as YYYY-MM-DD")
        _require(bool(source.seeds), f"{key}.seeds is missing; a measurement lists the seeds it ran with")
    if source.date is not None:
        try:
            datetime.date.fromisoformat(source.date)
        except ValueError:
            raise ExpectedResultsError(f"{key}.date: invalid date {source.date!r}; use YYYY-MM-DD") from None


def _validate_quantity(name: str, quantity: Quantity, sources: dict[str, Source]) -> None:
    key = f"quantities[{name}]"
    root = name.split(".", 1)[0]
    _require(
        root in QUANTITY_ROOTS and all(name.split(".")),
        f"{key}: unknown quantity path; it starts with one of {', '.join(QUANTITY_ROOTS)}",
    )
    _require(quantity.value is not None, f"{key}.value is missing")
    _require(math.isfinite(quantity.value), f"{key}.value must be a finite number, got {quantity.value}")
    _require(quantity.direction is not None, f"{key}.direction is missing; use within, at_least or at_most")
    defined = ", ".join(sources) or "(none defined)"
    _require(bool(quantity.source), f"{key}.source is missing; name one of the sources: {defined}")
    _require(
        quantity.source in sources,
        f"{key}.source: unknown source {quantity.source!r}; define it under sources or use one of {defined}",
    )
    both = quantity.absolute_tolerance is not None and quantity.relative_tolerance is not None
    _require(not both, f"{key}: give absolute_tolerance or relative_tolerance, not both")
    for tolerance_key in ("absolute_tolerance", "relative_tolerance"):
        value = getattr(quantity, tolerance_key)
        _require(value is None or value >= 0, f"{key}.{tolerance_key} must be >= 0, got {value}")
    if quantity.direction == "within":
        has_tolerance = quantity.absolute_tolerance is not None or quantity.relative_tolerance is not None
        _require(has_tolerance, f"{key}: direction within needs absolute_tolerance or relative_tolerance")


def _validate_curve_point(index: int, point: CurvePoint, sources: dict[str, Source]) -> None:
    key = f"curve[{index}]"
    _require(point.constraint is not None, f"{key}.constraint is missing")
    _require(0 < point.constraint <= 1, f"{key}.constraint must be in (0, 1], got {point.constraint}")
    _require(point.value is not None, f"{key}.value is missing")
    _require(point.source in sources, f"{key}.source: unknown source {point.source!r}; define it under sources")


def parse_expected(data: Any) -> ExpectedResults:
    """Validate the parsed YAML of an expected-results file and return it typed."""
    try:
        return _parse(data)
    except ExpectedResultsError:
        raise
    except ConfigError as error:
        raise ExpectedResultsError(str(error)) from None


def _parse(data: Any) -> ExpectedResults:
    _require(isinstance(data, dict), "the top level must be a mapping with experiment, sources and quantities")
    data = _dates_as_text(dict(data))
    sources_data = _mapping(data.pop("sources", None), "sources")
    quantities_data = _mapping(data.pop("quantities", None), "quantities")
    top = build_section(ExpectedResults, data, "")
    _require(top.format == EXPECTED_FORMAT, f"format: this version reads format {EXPECTED_FORMAT}, got {top.format}")
    _require(bool(top.experiment), "experiment is missing; give the experiment name, e.g. paper/bert-base-sst2-c0.6")
    _require(
        top.constraint is None or 0 < top.constraint <= 1,
        f"constraint must be in (0, 1] or absent, got {top.constraint}",
    )

    top.sources = {name: build_section(Source, value, f"sources[{name}]") for name, value in sources_data.items()}
    for name, source in top.sources.items():
        _validate_source(name, source)
    top.quantities = {name: build_section(Quantity, value, f"quantities[{name}]") for name, value in quantities_data.items()}
    for name, quantity in top.quantities.items():
        _validate_quantity(name, quantity, top.sources)
    for index, point in enumerate(top.curve):
        _validate_curve_point(index, point, top.sources)
    return top


def expected_results_path(experiment: str, root: str | Path = DEFAULT_EXPECTED_ROOT) -> Path:
    return Path(root) / f"{experiment}.yaml"


def load_expected(path: str | Path) -> ExpectedResults:
    """Load and validate an expected-results file; raise ExpectedResultsError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; write it (scripts/make_expected_results.py writes the paper experiments' files)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ExpectedResultsError(f"{path} is not valid YAML: {error}") from error
    try:
        return parse_expected(data)
    except ConfigError as error:
        raise ExpectedResultsError(f"{path}: {error}") from None


def to_yaml_data(expected: ExpectedResults) -> dict[str, Any]:
    """Return the YAML form of expected results, leaving out empty optional keys."""

    def compact(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: compact(item) for key, item in value.items() if item not in (None, "", [], {})}
        if isinstance(value, list):
            return [compact(item) for item in value]
        if hasattr(value, "__dataclass_fields__"):
            return compact(dict(value.__dict__))
        return value

    return compact(
        {
            "format": expected.format,
            "experiment": expected.experiment,
            "constraint": expected.constraint,
            "metric": expected.metric,
            "sources": expected.sources,
            "quantities": expected.quantities,
            "curve": expected.curve,
        }
    )
