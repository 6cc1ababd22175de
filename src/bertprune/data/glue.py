"""GLUE task specifications and readers for the TSV files and the Hugging Face copy.

Local files follow the layout of the GLUE download script: one folder per task
(`<data_dir>/SST-2/train.tsv`, `<data_dir>/SST-2/dev.tsv`, ...). Labels are numbered in the
order of the `nyu-mll/glue` dataset on the Hugging Face hub, so a model fine-tuned on either
source predicts the same label ids.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
TRAIN_FILE = "train.tsv"

# Split names accepted by the readers. "dev_mismatched" exists for MNLI only.
SPLITS = ("train", "dev", "dev_mismatched")

Column = str | int


@dataclass(frozen=True)
class GlueTaskSpec:
    """Layout, labels and metrics of one GLUE task.

    Columns are header names for files with a header and zero-based indices for the
    headerless CoLA files. `tsv_labels[i]` is the label string that the TSV file writes for
    label id `i`, and `label_names[i]` is the `nyu-mll/glue` class name of the same id.
    """

    name: str
    folder: str
    text_a_column: Column
    text_b_column: Column | None
    label_column: Column
    is_regression: bool
    label_names: tuple[str, ...]
    tsv_labels: tuple[str, ...]
    metric_names: tuple[str, ...]
    primary_metric: str
    hub_text_a: str
    hub_text_b: str | None
    has_header: bool = True
    # Field count of every row in a headerless file. Files with a header use the header width.
    num_columns: int | None = None
    dev_file: str = "dev.tsv"
    dev_mismatched_file: str | None = None
    hub_dev_split: str = "validation"
    hub_dev_mismatched_split: str | None = None

    def __post_init__(self) -> None:
        if self.is_regression and (self.label_names or self.tsv_labels):
            raise ValueError(f"GLUE task {self.name}: a regression task has no label names")
        if not self.is_regression and len(self.label_names) < 2:
            raise ValueError(f"GLUE task {self.name}: a classification task needs at least two labels")
        if len(self.tsv_labels) != len(self.label_names):
            raise ValueError(
                f"GLUE task {self.name}: {len(self.tsv_labels)} TSV labels "
                f"but {len(self.label_names)} label names"
            )
        if self.primary_metric not in self.metric_names:
            raise ValueError(
                f"GLUE task {self.name}: primary metric {self.primary_metric!r} "
                f"is not in {self.metric_names}"
            )
        if self.has_header == (self.num_columns is not None):
            raise ValueError(
                f"GLUE task {self.name}: num_columns is required for headerless files "
                "and must be None for files with a header"
            )
        if (self.dev_mismatched_file is None) != (self.hub_dev_mismatched_split is None):
            raise ValueError(
                f"GLUE task {self.name}: dev_mismatched_file and hub_dev_mismatched_split "
                "must be set together"
            )
        columns = [self.text_a_column, self.label_column]
        if self.text_b_column is not None:
            columns.append(self.text_b_column)
        expected_type = str if self.has_header else int
        for column in columns:
            if not isinstance(column, expected_type):
                raise ValueError(
                    f"GLUE task {self.name}: column {column!r} must be a "
                    f"{expected_type.__name__} because has_header={self.has_header}"
                )

    @property
    def num_labels(self) -> int:
        """Output size of a model head for this task: 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair_task(self) -> bool:
        """Whether each example is a sentence pair."""
        return self.text_b_column is not None

    @property
    def hub_config(self) -> str:
        """Configuration name of this task in the `nyu-mll/glue` dataset."""
        return self.name

    def file_name(self, split: str) -> str:
        """Return the TSV file name of `split` inside the task folder."""
        _check_split(self, split)
        if split == "train":
            return TRAIN_FILE
        if split == "dev":
            return self.dev_file
        return self.dev_mismatched_file  # type: ignore[return-value]

    def hub_split(self, split: str) -> str:
        """Return the `nyu-mll/glue` split name that matches `split`."""
        _check_split(self, split)
        if split == "train":
            return "train"
        if split == "dev":
            return self.hub_dev_split
        return self.hub_dev_mismatched_split  # type: ignore[return-value]


def _check_split(spec: GlueTaskSpec, split: str) -> None:
    if split.startswith("test"):
        raise ValueError(
            f"GLUE {spec.folder} split {split!r} is not supported: GLUE test sets have no "
            "public labels. Use 'train' or 'dev'."
        )
    if split not in SPLITS:
        raise ValueError(f"unknown GLUE split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "dev_mismatched" and spec.dev_mismatched_file is None:
        raise ValueError(f"GLUE {spec.folder} has no 'dev_mismatched' split; only MNLI has one")


_BINARY_IDS = ("0", "1")

# NOTE: only the SST-2, STS-B and MRPC layouts have been checked against real GLUE files. The
# other tasks follow the column names and label strings of the Hugging Face GLUE builder script.
GLUE_TASKS: dict[str, GlueTaskSpec] = {
    spec.name: spec
    for spec in (
        # CoLA train and dev files have no header. Each row is source code, label, original
        # annotation, sentence.
        GlueTaskSpec(
            name="cola",
            folder="CoLA",
            text_a_column=3,
            text_b_column=None,
            label_column=1,
            is_regression=False,
            label_names=("unacceptable", "acceptable"),
            tsv_labels=_BINARY_IDS,
            metric_names=("matthews_correlation",),
            primary_metric="matthews_correlation",
            hub_text_a="sentence",
            hub_text_b=None,
            has_header=False,
            num_columns=4,
        ),
        GlueTaskSpec(
            name="sst2",
            folder="SST-2",
            text_a_column="sentence",
            text_b_column=None,
            label_column="label",
            is_regression=False,
            label_names=("negative", "positive"),
            tsv_labels=_BINARY_IDS,
            metric_names=("accuracy",),
            primary_metric="accuracy",
            hub_text_a="sentence",
            hub_text_b=None,
        ),
        # The MRPC header starts with a UTF-8 byte order mark before "Quality".
        GlueTaskSpec(
            name="mrpc",
            folder="MRPC",
            text_a_column="#1 String",
            text_b_column="#2 String",
            label_column="Quality",
            is_regression=False,
            label_names=("not_equivalent", "equivalent"),
            tsv_labels=_BINARY_IDS,
            metric_names=("accuracy", "f1"),
            primary_metric="accuracy",
            hub_text_a="sentence1",
            hub_text_b="sentence2",
        ),
        # The STS-B similarity score (0 to 5) is the last of ten columns.
        GlueTaskSpec(
            name="stsb",
            folder="STS-B",
            text_a_column="sentence1",
            text_b_column="sentence2",
            label_column="score",
            is_regression=True,
            label_names=(),
            tsv_labels=(),
            metric_names=("pearson", "spearman"),
            primary_metric="spearman",
            hub_text_a="sentence1",
            hub_text_b="sentence2",
        ),
        GlueTaskSpec(
            name="qqp",
            folder="QQP",
            text_a_column="question1",
            text_b_column="question2",
            label_column="is_duplicate",
            is_regression=False,
            label_names=("not_duplicate", "duplicate"),
            tsv_labels=_BINARY_IDS,
            metric_names=("accuracy", "f1"),
            primary_metric="accuracy",
            hub_text_a="question1",
            hub_text_b="question2",
        ),
        # MNLI train has 12 columns and dev has 16 (five annotator labels). gold_label is last in both.
        GlueTaskSpec(
            name="mnli",
            folder="MNLI",
            text_a_column="sentence1",
            text_b_column="sentence2",
            label_column="gold_label",
            is_regression=False,
            label_names=("entailment", "neutral", "contradiction"),
            tsv_labels=("entailment", "neutral", "contradiction"),
            metric_names=("accuracy",),
            primary_metric="accuracy",
            hub_text_a="premise",
            hub_text_b="hypothesis",
            dev_file="dev_matched.tsv",
            dev_mismatched_file="dev_mismatched.tsv",
            hub_dev_split="validation_matched",
            hub_dev_mismatched_split="validation_mismatched",
        ),
        GlueTaskSpec(
            name="qnli",
            folder="QNLI",
            text_a_column="question",
            text_b_column="sentence",
            label_column="label",
            is_regression=False,
            label_names=("entailment", "not_entailment"),
            tsv_labels=("entailment", "not_entailment"),
            metric_names=("accuracy",),
            primary_metric="accuracy",
            hub_text_a="question",
            hub_text_b="sentence",
        ),
        GlueTaskSpec(
            name="rte",
            folder="RTE",
            text_a_column="sentence1",
            text_b_column="sentence2",
            label_column="label",
            is_regression=False,
            label_names=("entailment", "not_entailment"),
            tsv_labels=("entailment", "not_entailment"),
            metric_names=("accuracy",),
            primary_metric="accuracy",
            hub_text_a="sentence1",
            hub_text_b="sentence2",
        ),
        # WNLI writes 1 for entailment, and the hub numbers not_entailment first, so the ids agree.
        GlueTaskSpec(
            name="wnli",
            folder="WNLI",
            text_a_column="sentence1",
            text_b_column="sentence2",
            label_column="label",
            is_regression=False,
            label_names=("not_entailment", "entailment"),
            tsv_labels=_BINARY_IDS,
            metric_names=("accuracy",),
            primary_metric="accuracy",
            hub_text_a="sentence1",
            hub_text_b="sentence2",
        ),
    )
}


def get_glue_task(name: str | GlueTaskSpec) -> GlueTaskSpec:
    """Look up a GLUE task by its lower-case key (`sst2`) or GLUE folder name (`SST-2`)."""
    if isinstance(name, GlueTaskSpec):
        return name
    spec = GLUE_TASKS.get(name)
    if spec is not None:
        return spec
    for candidate in GLUE_TASKS.values():
        if candidate.folder == name:
            return candidate
    raise ValueError(f"unknown GLUE task {name!r}; supported tasks: {', '.join(GLUE_TASKS)}")


@dataclass
class SentenceExamples:
    """Texts and labels of a sentence or sentence-pair classification set.

    `labels` is int64 class ids for classification and float32 scores for regression.
    `text_b` is None for single-sentence tasks.
    """

    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}")
        if len(self.text_a) != len(self.labels):
            raise ValueError(f"{len(self.text_a)} texts but {len(self.labels)} labels")
        if self.text_b is not None and len(self.text_b) != len(self.text_a):
            raise ValueError(f"{len(self.text_a)} first texts but {len(self.text_b)} second texts")

    def __len__(self) -> int:
        return len(self.text_a)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SentenceExamples:
        """Return the examples at `indices`, in that order."""
        index_array = np.asarray(indices, dtype=np.int64)
        if index_array.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {index_array.shape}")
        positions = index_array.tolist()
        return SentenceExamples(
            text_a=[self.text_a[i] for i in positions],
            text_b=None if self.text_b is None else [self.text_b[i] for i in positions],
            labels=self.labels[index_array],
        )


def read_glue_tsv(
    task: str | GlueTaskSpec,
    split: str,
    data_dir: str | Path,
    *,
    skip_malformed_rows: bool = False,
) -> SentenceExamples:
    """Read the train or dev TSV file of a GLUE task from a folder laid out as GLUE distributes it.

    Rows are split on tabs with quoting disabled, because GLUE sentences contain unbalanced
    quote characters. A leading UTF-8 byte order mark is removed. A row with the wrong number
    of fields or a label outside the task's label set raises ValueError naming the file and
    line, unless `skip_malformed_rows` is true, in which case such rows are logged and dropped.
    Blank lines are skipped.

    Raises:
        FileNotFoundError: the task file does not exist under `data_dir`.
        ValueError: an unknown task or split, a test split, a missing header column, or a
            malformed row.
    """
    spec = get_glue_task(task)
    path = Path(data_dir) / spec.folder / spec.file_name(split)
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE file not found: {path}. Expected the GLUE layout "
            f"<data_dir>/{spec.folder}/{spec.file_name(split)} with data_dir={data_dir}."
        )

    text_a: list[str] = []
    text_b: list[str] | None = [] if spec.is_pair_task else None
    labels: list[int | float] = []
    skipped_lines: list[int] = []
    blank_lines = 0

    # utf-8-sig drops the byte order mark that starts the MRPC files.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.has_header:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty, but a header row was expected")
            width = len(header)
            text_a_index = _column_index(header, spec.text_a_column, path)
            text_b_index = None
            if spec.text_b_column is not None:
                text_b_index = _column_index(header, spec.text_b_column, path)
            label_index = _column_index(header, spec.label_column, path)
        else:
            width = spec.num_columns  # type: ignore[assignment]
            text_a_index = spec.text_a_column  # type: ignore[assignment]
            text_b_index = spec.text_b_column  # type: ignore[assignment]
            label_index = spec.label_column  # type: ignore[assignment]

        for row in reader:
            line = reader.line_num
            if not row:
                blank_lines += 1
                continue
            try:
                if len(row) != width:
                    raise ValueError(f"expected {width} tab-separated fields, found {len(row)}")
                label = _parse_label(spec, row[label_index])
            except ValueError as error:
                if not skip_malformed_rows:
                    raise ValueError(f"{path}, line {line}: {error}") from None
                skipped_lines.append(line)
                continue
            text_a.append(row[text_a_index])
            if text_b is not None:
                text_b.append(row[text_b_index])  # type: ignore[index]
            labels.append(label)

    if blank_lines:
        logger.warning("%s: skipped %d blank lines", path, blank_lines)
    if skipped_lines:
        logger.warning(
            "%s: skipped %d malformed rows (first lines: %s)",
            path,
            len(skipped_lines),
            ", ".join(str(line) for line in skipped_lines[:10]),
        )
    label_dtype = np.float32 if spec.is_regression else np.int64
    examples = SentenceExamples(text_a=text_a, text_b=text_b, labels=np.asarray(labels, dtype=label_dtype))
    logger.info("read %d %s %s examples from %s", len(examples), spec.folder, split, path)
    return examples


def _column_index(header: list[str], column: Column, path: Path) -> int:
    try:
        return header.index(column)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{path}: header has no column {column!r}; header is {header}") from None


def _parse_label(spec: GlueTaskSpec, value: str) -> int | float:
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"invalid {spec.folder} score {value!r}; expected a number") from None
        if not np.isfinite(score):
            raise ValueError(f"invalid {spec.folder} score {value!r}; expected a finite number")
        return score
    try:
        return spec.tsv_labels.index(value)
    except ValueError:
        raise ValueError(
            f"unknown {spec.folder} label {value!r}; expected one of {list(spec.tsv_labels)}"
        ) from None


def load_glue_from_hub(task: str | GlueTaskSpec, split: str) -> SentenceExamples:
    """Load a GLUE train or dev split from the `nyu-mll/glue` dataset with `datasets.load_dataset`.

    This needs the Hugging Face hub or a populated `datasets` cache. The label names of the
    downloaded split are checked against `label_names` so that label ids agree with
    `read_glue_tsv`.

    NOTE: the tests run this function against in-memory datasets only, never against the hub.
    """
    import datasets  # imported here because only the hub loader needs it

    spec = get_glue_task(task)
    hub_split = spec.hub_split(split)
    dataset = datasets.load_dataset(HUB_DATASET, spec.hub_config, split=hub_split)

    if not spec.is_regression:
        hub_names = tuple(dataset.features["label"].names)
        if hub_names != spec.label_names:
            raise ValueError(
                f"{HUB_DATASET}/{spec.hub_config} label names {hub_names} differ from the "
                f"expected {spec.label_names}"
            )
    label_dtype = np.float32 if spec.is_regression else np.int64
    labels = np.asarray(dataset["label"], dtype=label_dtype)
    if not spec.is_regression and np.any(labels < 0):
        raise ValueError(f"{HUB_DATASET}/{spec.hub_config} split {hub_split} has unlabelled rows")

    text_b = list(dataset[spec.hub_text_b]) if spec.hub_text_b is not None else None
    examples = SentenceExamples(text_a=list(dataset[spec.hub_text_a]), text_b=text_b, labels=labels)
    logger.info("loaded %d %s %s examples from %s", len(examples), spec.folder, hub_split, HUB_DATASET)
    return examples
