"""SQuAD 1.1 / 2.0 reading, BERT feature windows, answer post-processing and the official metrics.

The feature and post-processing steps follow `run_squad.py` of Google BERT
(github.com/google-research/bert), whose feature procedure the MLPerf Inference BERT reference
repeats in `language/bert/create_squad_data.py` of github.com/mlcommons/inference:
whitespace-split contexts, word-piece tokens per word, sliding windows of
``max_seq_length - len(query) - 3`` tokens advanced by ``doc_stride``, and the "max context"
rule that assigns each token to one window. With the uncased BERT vocabulary and the default
lengths (384, 128, 64), dev-v1.1.json yields 10,833 features for its 10,570 questions.

The metrics follow the official evaluation scripts ``evaluate-v1.1.py`` and ``evaluate-v2.0.py``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import re
import string
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from bertprune.provenance import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LENGTH = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_QUERY_LENGTH = 64
DEFAULT_N_BEST_SIZE = 20
DEFAULT_MAX_ANSWER_LENGTH = 30

# Google BERT numbers features from this value, and the MLPerf reference keeps it.
FIRST_UNIQUE_ID = 1_000_000_000

# Bump when the feature procedure or the cache layout changes, so old cache files are not reused.
FEATURE_CACHE_FORMAT_VERSION = 1

# The word separators of Google BERT `run_squad.py`: U+202F (narrow no-break space) splits
# words, but other Unicode spaces such as U+00A0 stay inside a word.
_CONTEXT_WHITESPACE = frozenset(" \t\r\n\u202f")

# The v1.1 prediction for a question whose features yield no valid span.
NO_ANSWER_TEXT_V1 = "empty"


class SquadTokenizer(Protocol):
    """Word-piece tokenizer interface used here, met by `transformers` BERT tokenizers."""

    cls_token: str
    sep_token: str
    pad_token_id: int

    def tokenize(self, text: str) -> list[str]: ...

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]: ...


@dataclass
class SquadExample:
    """One SQuAD question with its whitespace-split context.

    `start_position` and `end_position` are indices into `doc_tokens` of the first gold answer,
    or -1 for an unanswerable question or an answer whose offsets do not match the context.
    """

    qas_id: str
    question_text: str
    context_text: str
    doc_tokens: list[str]
    answers: list[str]
    orig_answer_text: str
    start_position: int
    end_position: int
    is_impossible: bool


@dataclass
class SquadFeature:
    """One window of one example as BERT input, padded to `max_seq_length`.

    `token_to_orig_map` and `token_is_max_context` are keyed by the token index in `tokens`
    and cover only the context part. `start_position` and `end_position` are token indices of
    the answer in this window, or 0 (the [CLS] token) when absent or not built for training.
    """

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    start_position: int
    end_position: int


# ---------------------------------------------------------------------------------------------
# Reading examples
# ---------------------------------------------------------------------------------------------


def _split_context(context: str) -> tuple[list[str], list[int]]:
    """Split a context into words and map every character to the index of its word."""
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    previous_is_whitespace = True
    for char in context:
        if char in _CONTEXT_WHITESPACE:
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                doc_tokens.append(char)
            else:
                doc_tokens[-1] += char
            previous_is_whitespace = False
        # A whitespace character maps to the word before it, or to -1 before the first word.
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def _build_example(
    *,
    source: str,
    qas_id: str,
    question_text: str,
    context_text: str,
    doc_tokens: list[str],
    char_to_word_offset: list[int],
    answers: list[tuple[str, int]],
    is_impossible: bool,
    version_2_with_negative: bool,
    is_training: bool,
) -> SquadExample | None:
    """Build one example from (text, character offset) answers.

    Returns None for a training question whose answer text does not match the context at its
    offset, because Google BERT drops such questions from training.
    """
    if is_impossible:
        return SquadExample(
            qas_id=qas_id,
            question_text=question_text,
            context_text=context_text,
            doc_tokens=doc_tokens,
            answers=[],
            orig_answer_text="",
            start_position=-1,
            end_position=-1,
            is_impossible=True,
        )

    if not answers:
        hint = "" if version_2_with_negative else ". Read SQuAD 2.0 data with version_2_with_negative=True"
        raise ValueError(f"{source}: question {qas_id!r} has no answers and is not marked is_impossible{hint}")

    # Positions come from the first answer only. Google BERT requires exactly one answer for
    # training, and SQuAD training files have one per question.
    answer_text, answer_offset = answers[0]
    answer_end = answer_offset + len(answer_text) - 1
    start_position = -1
    end_position = -1
    if answer_text and 0 <= answer_offset and answer_end < len(context_text):
        start_position = char_to_word_offset[answer_offset]
        end_position = char_to_word_offset[answer_end]

    if start_position < 0 or end_position < start_position:
        if is_training:
            raise ValueError(
                f"{source}: question {qas_id!r} has an invalid answer offset {answer_offset} "
                f"for answer {answer_text!r} in a context of {len(context_text)} characters"
            )
        logger.debug("Question %s: answer offset %d does not fit its context", qas_id, answer_offset)
        start_position = -1
        end_position = -1
    elif is_training:
        actual_text = " ".join(doc_tokens[start_position : end_position + 1])
        cleaned_answer_text = " ".join(answer_text.split())
        if cleaned_answer_text not in actual_text:
            logger.warning(
                "Skipping training question %s: answer %r not found in context words %r",
                qas_id,
                cleaned_answer_text,
                actual_text,
            )
            return None

    return SquadExample(
        qas_id=qas_id,
        question_text=question_text,
        context_text=context_text,
        doc_tokens=doc_tokens,
        answers=[text for text, _ in answers],
        orig_answer_text=answer_text,
        start_position=start_position,
        end_position=end_position,
        is_impossible=False,
    )


def _require(record: Any, key: str, path: Path, location: str) -> Any:
    if not isinstance(record, dict):
        raise ValueError(f"{path}: {location} is a {type(record).__name__}, expected a JSON object")
    if key not in record:
        raise ValueError(f"{path}: {location} is missing the key {key!r}")
    return record[key]


def _require_list(record: Any, key: str, path: Path, location: str) -> list[Any]:
    value = _require(record, key, path, location)
    if not isinstance(value, list):
        raise ValueError(f"{path}: {location} has {key!r} of type {type(value).__name__}, expected a list")
    return value


def read_squad_examples(
    path: str | os.PathLike[str],
    *,
    version_2_with_negative: bool = False,
    is_training: bool = False,
) -> list[SquadExample]:
    """Read a SQuAD 1.1 or 2.0 JSON file into examples, in file order.

    With `is_training`, questions whose answer text does not match the context are skipped and
    logged. Raises FileNotFoundError for a missing file and ValueError for invalid JSON or a
    missing key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid SQuAD JSON: {error}") from error

    articles = _require_list(document, "data", path, "the top-level object")

    examples: list[SquadExample] = []
    skipped = 0
    for article_index, article in enumerate(articles):
        paragraphs = _require_list(article, "paragraphs", path, f"article {article_index}")
        for paragraph_index, paragraph in enumerate(paragraphs):
            paragraph_location = f"article {article_index} paragraph {paragraph_index}"
            context_text = _require(paragraph, "context", path, paragraph_location)
            if not isinstance(context_text, str):
                raise ValueError(f"{path}: {paragraph_location} has a context of type {type(context_text).__name__}")
            doc_tokens, char_to_word_offset = _split_context(context_text)
            for qa_index, qa in enumerate(_require_list(paragraph, "qas", path, paragraph_location)):
                qa_location = f"{paragraph_location} question {qa_index}"
                answers = []
                for answer_index, answer in enumerate(_require_list(qa, "answers", path, qa_location)):
                    answer_location = f"{qa_location} answer {answer_index}"
                    answer_text = _require(answer, "text", path, answer_location)
                    answer_start = _require(answer, "answer_start", path, answer_location)
                    if isinstance(answer_start, bool) or not isinstance(answer_start, int):
                        raise ValueError(f"{path}: {answer_location} has a non-integer answer_start {answer_start!r}")
                    answers.append((answer_text, answer_start))
                is_impossible = version_2_with_negative and bool(qa.get("is_impossible", False))
                example = _build_example(
                    source=str(path),
                    qas_id=str(_require(qa, "id", path, qa_location)),
                    question_text=_require(qa, "question", path, qa_location),
                    context_text=context_text,
                    doc_tokens=doc_tokens,
                    char_to_word_offset=char_to_word_offset,
                    answers=answers,
                    is_impossible=is_impossible,
                    version_2_with_negative=version_2_with_negative,
                    is_training=is_training,
                )
                if example is None:
                    skipped += 1
                else:
                    examples.append(example)

    if skipped:
        logger.warning("Skipped %d training questions of %s whose answer does not match the context", skipped, path)
    logger.info("Read %d SQuAD examples from %s", len(examples), path)
    return examples


def load_squad_examples_from_hub(
    split: str,
    *,
    version_2_with_negative: bool,
    is_training: bool,
) -> list[SquadExample]:
    """Load `rajpurkar/squad` (or `rajpurkar/squad_v2`) with `datasets` and convert its rows.

    Rows with an empty answer list are unanswerable when `version_2_with_negative` is set.
    """
    # NOTE: tested only against a stand-in for `datasets.load_dataset`, because the hub is
    # unreachable from the test machines. The row layout is that of the hub dataset cards.
    import datasets

    name = "rajpurkar/squad_v2" if version_2_with_negative else "rajpurkar/squad"
    source = f"{name} split {split!r}"
    rows = datasets.load_dataset(name, split=split)

    examples: list[SquadExample] = []
    skipped = 0
    previous_context: str | None = None
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    for row in tqdm(rows, desc=f"Reading {name}", unit="question"):
        context_text = row["context"]
        if context_text != previous_context:
            doc_tokens, char_to_word_offset = _split_context(context_text)
            previous_context = context_text
        answers = list(zip(row["answers"]["text"], (int(start) for start in row["answers"]["answer_start"])))
        example = _build_example(
            source=source,
            qas_id=str(row["id"]),
            question_text=row["question"],
            context_text=context_text,
            doc_tokens=doc_tokens,
            char_to_word_offset=char_to_word_offset,
            answers=answers,
            is_impossible=version_2_with_negative and not answers,
            version_2_with_negative=version_2_with_negative,
            is_training=is_training,
        )
        if example is None:
            skipped += 1
        else:
            examples.append(example)

    if skipped:
        logger.warning("Skipped %d training questions of %s whose answer does not match the context", skipped, source)
    logger.info("Loaded %d SQuAD examples from %s", len(examples), source)
    return examples


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _validate_lengths(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    for name, value in (
        ("max_seq_length", max_seq_length),
        ("doc_stride", doc_stride),
        ("max_query_length", max_query_length),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_seq_length <= max_query_length + 3:
        raise ValueError(
            f"max_seq_length={max_seq_length} must exceed max_query_length + 3 = {max_query_length + 3}, "
            "because [CLS], two [SEP] and at least one context token must fit"
        )


def _improve_answer_span(
    doc_tokens: Sequence[str],
    input_start: int,
    input_end: int,
    tokenizer: SquadTokenizer,
    orig_answer_text: str,
) -> tuple[int, int]:
    """Shrink a word-aligned answer span to the word pieces that spell the answer.

    The word-level span of the answer "1895" in "(1895-1943)." covers the whole word. This
    returns the first sub-span whose word pieces equal the tokenized answer, or the input span
    when none does (for example "Japan" inside the single piece "japanese").
    """
    answer_pieces = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start : new_end + 1]) == answer_pieces:
                return new_start, new_end
    return input_start, input_end


def _is_max_context(doc_spans: Sequence[tuple[int, int]], span_index: int, position: int) -> bool:
    """Check whether `span_index` is the window with the max context around token `position`.

    The score of a window is min(tokens to the left, tokens to the right) + 0.01 * window
    length. The first window with the highest score wins ties.
    """
    best_score = -1.0
    best_index = -1
    for index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if score > best_score:
            best_score = score
            best_index = index
    return best_index == span_index


def _make_doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """Return (start, length) windows over `num_tokens` tokens, the last of which ends at the last token."""
    doc_spans = []
    start_offset = 0
    while start_offset < num_tokens:
        length = min(num_tokens - start_offset, max_tokens_for_doc)
        doc_spans.append((start_offset, length))
        if start_offset + length == num_tokens:
            break
        start_offset += min(length, doc_stride)
    return doc_spans


def convert_examples_to_features(
    examples: Sequence[SquadExample],
    tokenizer: SquadTokenizer,
    *,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    doc_stride: int = DEFAULT_DOC_STRIDE,
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    is_training: bool = False,
    show_progress: bool = True,
) -> list[SquadFeature]:
    """Convert examples into `[CLS] query [SEP] context window [SEP]` features.

    An example with an empty context yields no feature. With `is_training`, each feature gets
    the answer's token positions in its window, or 0/0 when the answer is outside the window
    or the question is unanswerable.
    """
    _validate_lengths(max_seq_length, doc_stride, max_query_length)
    started = time.perf_counter()

    # Word-piece tokenization is deterministic per word, and contexts repeat across questions,
    # so both are memoised for the duration of this call.
    word_pieces: dict[str, list[str]] = {}
    previous_doc_tokens: list[str] | None = None
    tok_to_orig_index: list[int] = []
    orig_to_tok_index: list[int] = []
    all_doc_tokens: list[str] = []

    features: list[SquadFeature] = []
    empty_contexts = 0
    unique_id = FIRST_UNIQUE_ID
    for example_index, example in enumerate(
        tqdm(examples, desc="Building SQuAD features", unit="example", disable=not show_progress)
    ):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]

        if example.doc_tokens is not previous_doc_tokens and example.doc_tokens != previous_doc_tokens:
            tok_to_orig_index = []
            orig_to_tok_index = []
            all_doc_tokens = []
            for word_index, word in enumerate(example.doc_tokens):
                orig_to_tok_index.append(len(all_doc_tokens))
                pieces = word_pieces.get(word)
                if pieces is None:
                    pieces = tokenizer.tokenize(word)
                    word_pieces[word] = pieces
                for piece in pieces:
                    tok_to_orig_index.append(word_index)
                    all_doc_tokens.append(piece)
            previous_doc_tokens = example.doc_tokens

        tok_start_position = -1
        tok_end_position = -1
        if is_training and not example.is_impossible and example.start_position >= 0:
            tok_start_position = orig_to_tok_index[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end_position = orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end_position = len(all_doc_tokens) - 1
            tok_start_position, tok_end_position = _improve_answer_span(
                all_doc_tokens, tok_start_position, tok_end_position, tokenizer, example.orig_answer_text
            )

        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans = _make_doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)
        if not doc_spans:
            empty_contexts += 1

        for span_index, (doc_start, doc_length) in enumerate(doc_spans):
            tokens = [tokenizer.cls_token, *query_tokens, tokenizer.sep_token]
            segment_ids = [0] * len(tokens)
            token_to_orig_map: dict[int, int] = {}
            token_is_max_context: dict[int, bool] = {}
            for split_token_index in range(doc_start, doc_start + doc_length):
                token_to_orig_map[len(tokens)] = tok_to_orig_index[split_token_index]
                token_is_max_context[len(tokens)] = _is_max_context(doc_spans, span_index, split_token_index)
                tokens.append(all_doc_tokens[split_token_index])
                segment_ids.append(1)
            tokens.append(tokenizer.sep_token)
            segment_ids.append(1)

            input_ids = list(tokenizer.convert_tokens_to_ids(tokens))
            input_mask = [1] * len(input_ids)
            padding = max_seq_length - len(input_ids)
            input_ids.extend([tokenizer.pad_token_id] * padding)
            input_mask.extend([0] * padding)
            segment_ids.extend([0] * padding)

            start_position = 0
            end_position = 0
            doc_end = doc_start + doc_length - 1
            if tok_start_position >= doc_start and 0 <= tok_end_position <= doc_end:
                doc_offset = len(query_tokens) + 2
                start_position = tok_start_position - doc_start + doc_offset
                end_position = tok_end_position - doc_start + doc_offset

            features.append(
                SquadFeature(
                    unique_id=unique_id,
                    example_index=example_index,
                    doc_span_index=span_index,
                    tokens=tokens,
                    token_to_orig_map=token_to_orig_map,
                    token_is_max_context=token_is_max_context,
                    input_ids=input_ids,
                    input_mask=input_mask,
                    segment_ids=segment_ids,
                    start_position=start_position,
                    end_position=end_position,
                )
            )
            unique_id += 1

    if empty_contexts:
        logger.warning("%d examples have an empty context and yield no feature", empty_contexts)
    logger.info(
        "Built %d SQuAD features from %d examples in %.1f s (max_seq_length=%d, doc_stride=%d, max_query_length=%d)",
        len(features),
        len(examples),
        time.perf_counter() - started,
        max_seq_length,
        doc_stride,
        max_query_length,
    )
    return features


def features_to_arrays(features: Sequence[SquadFeature], *, with_positions: bool) -> dict[str, np.ndarray]:
    """Stack features into int64 model inputs shaped [num_features, max_seq_length].

    Keys are `input_ids`, `attention_mask` and `token_type_ids`, plus `start_positions` and
    `end_positions` shaped [num_features] when `with_positions` is set.
    """
    if not features:
        raise ValueError("features is empty, so the sequence length of the arrays is unknown")
    lengths = {len(feature.input_ids) for feature in features}
    if len(lengths) != 1:
        raise ValueError(f"features have different sequence lengths {sorted(lengths)}. Build them with one max_seq_length")

    arrays = {
        "input_ids": np.array([feature.input_ids for feature in features], dtype=np.int64),
        "attention_mask": np.array([feature.input_mask for feature in features], dtype=np.int64),
        "token_type_ids": np.array([feature.segment_ids for feature in features], dtype=np.int64),
    }
    if with_positions:
        arrays["start_positions"] = np.array([feature.start_position for feature in features], dtype=np.int64)
        arrays["end_positions"] = np.array([feature.end_position for feature in features], dtype=np.int64)
    return arrays


# ---------------------------------------------------------------------------------------------
# Feature cache
# ---------------------------------------------------------------------------------------------


def _examples_digest(examples: Sequence[SquadExample]) -> str:
    """Hash the fields that the reading options change, so a cache built from the same file
    read with other options (SQuAD 2.0 flags, skipped training questions) is not reused."""
    digest = hashlib.sha256()
    for example in examples:
        record = [example.qas_id, example.is_impossible, example.start_position, example.end_position]
        digest.update(json.dumps(record).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def feature_cache_key(
    *,
    vocab_sha256: str,
    examples_file_sha256: str,
    examples_digest: str,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    is_training: bool,
) -> str:
    """Return the sha256 hex digest that names a feature cache file."""
    payload = {
        "format_version": FEATURE_CACHE_FORMAT_VERSION,
        "vocab_sha256": vocab_sha256,
        "examples_file_sha256": examples_file_sha256,
        "examples_digest": examples_digest,
        "max_seq_length": int(max_seq_length),
        "doc_stride": int(doc_stride),
        "max_query_length": int(max_query_length),
        "is_training": bool(is_training),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def _features_to_cache_arrays(features: Sequence[SquadFeature], key: str) -> dict[str, np.ndarray]:
    num_features = len(features)
    seq_length = len(features[0].input_ids) if features else 0
    # -1 marks the [CLS], query, [SEP] and padding positions, which have no map entry.
    token_to_orig = np.full((num_features, seq_length), -1, dtype=np.int32)
    max_context = np.full((num_features, seq_length), -1, dtype=np.int8)
    for row, feature in enumerate(features):
        for index, orig in feature.token_to_orig_map.items():
            token_to_orig[row, index] = orig
        for index, flag in feature.token_is_max_context.items():
            max_context[row, index] = int(flag)

    def column(name: str, dtype: type) -> np.ndarray:
        return np.array([getattr(feature, name) for feature in features], dtype=dtype).reshape(num_features, seq_length)

    return {
        "metadata": _json_array({"format_version": FEATURE_CACHE_FORMAT_VERSION, "key": key, "num_features": num_features}),
        "tokens": _json_array([feature.tokens for feature in features]),
        "scalars": np.array(
            [
                [f.unique_id, f.example_index, f.doc_span_index, f.start_position, f.end_position]
                for f in features
            ],
            dtype=np.int64,
        ).reshape(num_features, 5),
        "input_ids": column("input_ids", np.int64),
        "input_mask": column("input_mask", np.int8),
        "segment_ids": column("segment_ids", np.int8),
        "token_to_orig": token_to_orig,
        "max_context": max_context,
    }


def _features_from_cache_arrays(arrays: Any, key: str) -> list[SquadFeature]:
    metadata = json.loads(arrays["metadata"].tobytes().decode("utf-8"))
    if metadata.get("format_version") != FEATURE_CACHE_FORMAT_VERSION or metadata.get("key") != key:
        raise ValueError(f"cache metadata {metadata} does not match format {FEATURE_CACHE_FORMAT_VERSION} and key {key}")
    tokens = json.loads(arrays["tokens"].tobytes().decode("utf-8"))
    scalars = arrays["scalars"]
    input_ids = arrays["input_ids"]
    input_mask = arrays["input_mask"]
    segment_ids = arrays["segment_ids"]
    token_to_orig = arrays["token_to_orig"]
    max_context = arrays["max_context"]
    num_features = metadata["num_features"]
    for name, array in (
        ("tokens", tokens),
        ("scalars", scalars),
        ("input_ids", input_ids),
        ("input_mask", input_mask),
        ("segment_ids", segment_ids),
        ("token_to_orig", token_to_orig),
        ("max_context", max_context),
    ):
        if len(array) != num_features:
            raise ValueError(f"cache array {name} has {len(array)} rows, expected {num_features}")

    features = []
    for row in range(num_features):
        context_positions = np.flatnonzero(token_to_orig[row] >= 0).tolist()
        orig_indices = token_to_orig[row, context_positions].tolist()
        flags = max_context[row, context_positions].tolist()
        unique_id, example_index, doc_span_index, start_position, end_position = scalars[row].tolist()
        features.append(
            SquadFeature(
                unique_id=unique_id,
                example_index=example_index,
                doc_span_index=doc_span_index,
                tokens=tokens[row],
                token_to_orig_map=dict(zip(context_positions, orig_indices)),
                token_is_max_context={position: flag == 1 for position, flag in zip(context_positions, flags)},
                input_ids=input_ids[row].tolist(),
                input_mask=input_mask[row].tolist(),
                segment_ids=segment_ids[row].tolist(),
                start_position=start_position,
                end_position=end_position,
            )
        )
    return features


def load_or_build_features(
    examples: Sequence[SquadExample],
    examples_file_sha256: str,
    tokenizer: SquadTokenizer,
    vocab_sha256: str,
    *,
    cache_dir: str | os.PathLike[str],
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    doc_stride: int = DEFAULT_DOC_STRIDE,
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    is_training: bool = False,
    show_progress: bool = True,
) -> list[SquadFeature]:
    """Load features from `cache_dir`, or build them and store them there.

    The cache file is an `.npz` archive read with `allow_pickle=False`, named by
    `feature_cache_key`. An unreadable or mismatched cache file is logged and rebuilt, and a
    failed cache write is logged while the built features are still returned.
    """
    _validate_lengths(max_seq_length, doc_stride, max_query_length)
    key = feature_cache_key(
        vocab_sha256=vocab_sha256,
        examples_file_sha256=examples_file_sha256,
        examples_digest=_examples_digest(examples),
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        is_training=is_training,
    )
    cache_dir = Path(cache_dir)
    cache_path = cache_dir / f"squad_features_{key}.npz"

    if cache_path.is_file():
        try:
            with np.load(cache_path, allow_pickle=False) as arrays:
                features = _features_from_cache_arrays(arrays, key)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            logger.warning("Rebuilding the SQuAD feature cache %s because it is unreadable: %s", cache_path, error)
        else:
            logger.info("Loaded %d SQuAD features from %s", len(features), cache_path)
            return features

    features = convert_examples_to_features(
        examples,
        tokenizer,
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        is_training=is_training,
        show_progress=show_progress,
    )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        arrays = _features_to_cache_arrays(features, key)
        atomic_write(cache_path, lambda file: np.savez_compressed(file, **arrays))
    except OSError as error:
        logger.warning("Failed to write the SQuAD feature cache %s: %s", cache_path, error)
    else:
        logger.info("Stored %d SQuAD features in %s", len(features), cache_path)
    return features


# ---------------------------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------------------------


def _is_bert_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_bert_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_bert_punctuation(char: str) -> bool:
    # BERT treats every non-alphanumeric ASCII symbol, such as "$" and "`", as punctuation.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk_character(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """Split text as the BERT BasicTokenizer does: clean, space CJK characters, lower-case and
    strip accents, and split off punctuation."""
    cleaned = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD or _is_bert_control(char):
            continue
        if _is_bert_whitespace(char):
            cleaned.append(" ")
        elif _is_cjk_character(code):
            cleaned.extend((" ", char, " "))
        else:
            cleaned.append(char)

    pieces: list[str] = []
    for token in "".join(cleaned).split():
        if do_lower_case:
            token = token.lower()
            token = "".join(char for char in unicodedata.normalize("NFD", token) if unicodedata.category(char) != "Mn")
        current = ""
        for char in token:
            if _is_bert_punctuation(char):
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(char)
            else:
                current += char
        if current:
            pieces.append(current)
    return pieces


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    """Remove spaces and map each position of the result to its position in `text`."""
    characters = []
    stripped_to_original: dict[int, int] = {}
    for index, char in enumerate(text):
        if char == " ":
            continue
        stripped_to_original[len(characters)] = index
        characters.append(char)
    return "".join(characters), stripped_to_original


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """Project de-word-pieced prediction text back onto the original context words.

    For the original words "Steve Smith's" and the prediction "steve smith", the result is
    "Steve Smith": the original is basic-tokenized, the prediction is located in it, and the
    character positions are carried over after removing spaces. When any step fails to line up
    (for example because lower-casing changed the length), the whole original text is returned.
    """
    tokenized_text = " ".join(_basic_tokenize(orig_text, do_lower_case))
    start_position = tokenized_text.find(pred_text)
    if start_position == -1:
        return orig_text
    end_position = start_position + len(pred_text) - 1

    orig_stripped, orig_map = _strip_spaces(orig_text)
    tokenized_stripped, tokenized_map = _strip_spaces(tokenized_text)
    if len(orig_stripped) != len(tokenized_stripped):
        return orig_text
    tokenized_to_stripped = {original: stripped for stripped, original in tokenized_map.items()}

    orig_start = None
    if start_position in tokenized_to_stripped:
        orig_start = orig_map.get(tokenized_to_stripped[start_position])
    orig_end = None
    if end_position in tokenized_to_stripped:
        orig_end = orig_map.get(tokenized_to_stripped[end_position])
    if orig_start is None or orig_end is None:
        return orig_text
    return orig_text[orig_start : orig_end + 1]


def _span_text(example: SquadExample, feature: SquadFeature, start: int, end: int, do_lower_case: bool) -> str:
    """Return the original context text for tokens start..end of a feature."""
    piece_text = " ".join(feature.tokens[start : end + 1])
    piece_text = piece_text.replace(" ##", "").replace("##", "")
    piece_text = " ".join(piece_text.split())
    orig_start = feature.token_to_orig_map[start]
    orig_end = feature.token_to_orig_map[end]
    orig_text = " ".join(example.doc_tokens[orig_start : orig_end + 1])
    return get_final_text(piece_text, orig_text, do_lower_case)


def _as_logit_matrix(name: str, logits: Any, num_features: int) -> np.ndarray:
    matrix = np.asarray(logits, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != num_features:
        raise ValueError(f"{name} must have shape [num_features={num_features}, seq_len], got {matrix.shape}")
    return matrix


def postprocess_predictions(
    examples: Sequence[SquadExample],
    features: Sequence[SquadFeature],
    start_logits: Any,
    end_logits: Any,
    *,
    n_best_size: int = DEFAULT_N_BEST_SIZE,
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
    do_lower_case: bool = True,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
    show_progress: bool = False,
) -> dict[str, str]:
    """Turn per-feature start and end logits into an answer text per question id.

    `start_logits` and `end_logits` are [num_features, seq_len] in the order of `features`.
    Candidates pair the top `n_best_size` starts with the top `n_best_size` ends of each
    feature. A candidate must lie in the context, start at a max-context token and span at
    most `max_answer_length` tokens. The highest start + end logit wins, and without any
    candidate the v1.1 answer is "empty". With `version_2_with_negative` the answer is "" when
    the null score (the lowest [CLS] start + end logit over the features) exceeds the best
    span score by more than `null_score_diff_threshold`.
    """
    if n_best_size < 1 or max_answer_length < 1:
        raise ValueError(
            f"n_best_size={n_best_size} and max_answer_length={max_answer_length} must both be positive"
        )
    start_matrix = _as_logit_matrix("start_logits", start_logits, len(features))
    end_matrix = _as_logit_matrix("end_logits", end_logits, len(features))
    if start_matrix.shape != end_matrix.shape:
        raise ValueError(f"start_logits {start_matrix.shape} and end_logits {end_matrix.shape} differ in shape")

    features_by_example: dict[int, list[int]] = collections.defaultdict(list)
    for feature_index, feature in enumerate(features):
        if not 0 <= feature.example_index < len(examples):
            raise ValueError(
                f"feature {feature.unique_id} has example_index {feature.example_index}, "
                f"but there are {len(examples)} examples"
            )
        features_by_example[feature.example_index].append(feature_index)

    predictions: dict[str, str] = {}
    for example_index, example in enumerate(
        tqdm(examples, desc="Post-processing SQuAD", unit="example", disable=not show_progress)
    ):
        # Each candidate is (start + end logit, feature index, start token, end token).
        candidates: list[tuple[float, int, int, int]] = []
        null_score = float("inf")
        for feature_index in features_by_example.get(example_index, []):
            feature = features[feature_index]
            feature_start_logits = start_matrix[feature_index]
            feature_end_logits = end_matrix[feature_index]
            null_score = min(null_score, float(feature_start_logits[0] + feature_end_logits[0]))

            # A stable sort keeps the lower index first among equal logits.
            start_indexes = np.argsort(-feature_start_logits, kind="stable")[:n_best_size].tolist()
            end_indexes = np.argsort(-feature_end_logits, kind="stable")[:n_best_size].tolist()
            for start in start_indexes:
                if start not in feature.token_to_orig_map or not feature.token_is_max_context.get(start, False):
                    continue
                for end in end_indexes:
                    if end not in feature.token_to_orig_map or end < start or end - start + 1 > max_answer_length:
                        continue
                    score = float(feature_start_logits[start] + feature_end_logits[end])
                    candidates.append((score, feature_index, start, end))

        # Python's sort is stable with reverse=True, so equal scores keep feature and index order.
        candidates.sort(key=lambda candidate: candidate[0], reverse=True)

        if not version_2_with_negative:
            if candidates:
                _, feature_index, start, end = candidates[0]
                predictions[example.qas_id] = _span_text(example, features[feature_index], start, end, do_lower_case)
            else:
                predictions[example.qas_id] = NO_ANSWER_TEXT_V1
            continue

        best_text = ""
        best_score = float("-inf")
        for score, feature_index, start, end in candidates:
            text = _span_text(example, features[feature_index], start, end, do_lower_case)
            if text:
                best_text = text
                best_score = score
                break
        if not best_text or null_score - best_score > null_score_diff_threshold:
            predictions[example.qas_id] = ""
        else:
            predictions[example.qas_id] = best_text
    return predictions


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, remove ASCII punctuation and the articles a/an/the, and collapse whitespace."""
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """Return 1.0 when the normalised texts are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _token_f1(prediction_tokens: list[str], ground_truth_tokens: list[str]) -> float:
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Return the token-overlap F1 (0 to 1) of the normalised texts.

    Two texts that both normalise to "" score 1.0, as in evaluate-v2.0.py. evaluate-v1.1.py
    scores that pair 0.0, and `squad_metrics` applies that rule to v1.1 data.
    """
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not ground_truth_tokens:
        return float(prediction_tokens == ground_truth_tokens)
    return _token_f1(prediction_tokens, ground_truth_tokens)


def _v1_f1_score(prediction: str, ground_truth: str) -> float:
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def squad_metrics(
    examples: Iterable[SquadExample],
    predictions: dict[str, str],
    *,
    version_2_with_negative: bool | None = None,
) -> dict[str, float]:
    """Compute exact match and F1 in percent, each the max over the gold answers, over all questions.

    `version_2_with_negative=None` selects the v2.0 rules when any example is unanswerable.
    Under the v2.0 rules gold answers that normalise to "" are dropped, an unanswerable
    question's gold is [""], and the result adds HasAns_/NoAns_ scores when both kinds occur.
    A question without a prediction scores 0, whereas evaluate-v2.0.py leaves it out of the average.
    """
    examples = list(examples)
    if not examples:
        raise ValueError("examples is empty, but the metrics need at least one question")
    if version_2_with_negative is None:
        version_2_with_negative = any(example.is_impossible for example in examples)

    exact_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    missing = 0
    for example in examples:
        if version_2_with_negative:
            gold_answers = [answer for answer in example.answers if normalize_answer(answer)] or [""]
            f1_function = f1_score
        else:
            gold_answers = example.answers
            f1_function = _v1_f1_score
            if not gold_answers:
                raise ValueError(
                    f"question {example.qas_id!r} has no gold answers. Score SQuAD 2.0 data with version_2_with_negative=True"
                )
        prediction = predictions.get(example.qas_id)
        if prediction is None:
            missing += 1
            exact_scores[example.qas_id] = 0.0
            f1_scores[example.qas_id] = 0.0
            continue
        exact_scores[example.qas_id] = max(exact_match_score(prediction, gold) for gold in gold_answers)
        f1_scores[example.qas_id] = max(f1_function(prediction, gold) for gold in gold_answers)

    if missing:
        logger.warning("%d of %d questions have no prediction and score 0", missing, len(examples))

    def percent(scores: dict[str, float], ids: list[str]) -> float:
        return 100.0 * sum(scores[qas_id] for qas_id in ids) / len(ids)

    all_ids = list(exact_scores)
    result = {"exact_match": percent(exact_scores, all_ids), "f1": percent(f1_scores, all_ids)}
    if version_2_with_negative:
        has_answer_ids = [example.qas_id for example in examples if not example.is_impossible]
        no_answer_ids = [example.qas_id for example in examples if example.is_impossible]
        if has_answer_ids and no_answer_ids:
            result["HasAns_exact"] = percent(exact_scores, has_answer_ids)
            result["HasAns_f1"] = percent(f1_scores, has_answer_ids)
            result["NoAns_exact"] = percent(exact_scores, no_answer_ids)
            result["NoAns_f1"] = percent(f1_scores, no_answer_ids)
    return result
