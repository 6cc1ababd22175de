"""Scoring LoadGen's accuracy log with the post-processing that `make eval` uses.

In accuracy mode LoadGen logs every response in `mlperf_log_accuracy.json` as hex-encoded bytes:
float32 [seq_len, 2] start and end logits per SQuAD feature, or the logits of a classification
sample. The decoded logits go through `Task.metrics_from_outputs`, so SQuAD predictions are post-
processed and scored by `bertprune.data.squad` exactly as in the eval stage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bertprune.mlperf.qsl import QUESTION_ANSWERING
from bertprune.mlperf.sut import PADDING_LOGIT
from bertprune.provenance import atomic_write_text

logger = logging.getLogger(__name__)

# MLPerf Inference bert-99: F1 >= 99% of the fp32 BERT-large reference F1 of 90.874 on SQuAD 1.1.
MLPERF_BERT99_F1 = 89.96526
OWN_TARGET_FRACTION = 0.99


def read_accuracy_log(path: str | Path, *, num_samples: int, kind: str, seq_len: int) -> dict[str, np.ndarray]:
    """Decode an accuracy log into the outputs of samples 0..num_samples-1, in sample order.

    Returns `start_logits` and `end_logits` [num_samples, seq_len] for question answering,
    where a response shorter than `seq_len` is padded with -10000 as the MLPerf accuracy script
    does, and `logits` [num_samples, num_labels] otherwise. Raises ValueError when a sample has
    no response or a response has the wrong size.
    """
    entries = json.loads(Path(path).read_text())
    responses: dict[int, np.ndarray] = {}
    duplicates = 0
    for entry in entries:
        index = int(entry["qsl_idx"])
        if not 0 <= index < num_samples:
            raise ValueError(f"{path}: response for sample {index}, but the library has {num_samples} samples")
        if index in responses:
            duplicates += 1
            continue
        responses[index] = np.frombuffer(bytes.fromhex(entry["data"]), dtype="<f4")
    if duplicates:
        logger.warning("%s: %d samples have more than one response; the first one is scored", path, duplicates)
    missing = sorted(set(range(num_samples)) - set(responses))
    if missing:
        raise ValueError(
            f"{path} has no response for {len(missing)} of {num_samples} samples (e.g. {missing[:5]}); "
            "run accuracy mode again"
        )

    ordered = [responses[index] for index in range(num_samples)]
    if kind == QUESTION_ANSWERING:
        start_logits = np.full((num_samples, seq_len), PADDING_LOGIT, dtype=np.float32)
        end_logits = np.full((num_samples, seq_len), PADDING_LOGIT, dtype=np.float32)
        for index, data in enumerate(ordered):
            if data.size % 2 or data.size // 2 > seq_len:
                raise ValueError(f"{path}: sample {index} has {data.size} values, not [at most {seq_len}, 2]")
            pairs = data.reshape(-1, 2)
            start_logits[index, : len(pairs)] = pairs[:, 0]
            end_logits[index, : len(pairs)] = pairs[:, 1]
        return {"start_logits": start_logits, "end_logits": end_logits}

    sizes = {data.size for data in ordered}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"{path}: classification responses must all have one non-zero size, got sizes {sorted(sizes)}")
    return {"logits": np.stack(ordered)}


def judge_accuracy(
    metrics: dict[str, float], primary_metric: str, dense_value: float, question_answering: bool
) -> dict[str, Any]:
    """Compare the primary metric with 99% of the dense model's value and, for SQuAD, with bert-99."""
    value = metrics[primary_metric]
    own_target = OWN_TARGET_FRACTION * dense_value
    judgement: dict[str, Any] = {
        "metric": primary_metric,
        "value": value,
        "dense_value": dense_value,
        "own_target": own_target,
        "meets_own_target": value >= own_target,
    }
    if question_answering:
        judgement["mlperf_bert99_target"] = MLPERF_BERT99_F1
        judgement["meets_mlperf_bert99_target"] = value >= MLPERF_BERT99_F1
    return judgement


def accuracy_text(metrics: dict[str, float], judgement: dict[str, Any], question_answering: bool) -> str:
    """Return accuracy.txt: the metric line that MLPerf's tools parse, then the two judgements."""
    if question_answering:
        first_line = json.dumps({"exact_match": metrics["exact_match"], "f1": metrics["f1"]})
    else:
        first_line = json.dumps(metrics)
    metric = judgement["metric"]
    lines = [
        first_line,
        f"99% of the dense model's {metric}: {metric} >= {judgement['own_target']:.5f}: "
        f"{'PASS' if judgement['meets_own_target'] else 'FAIL'}",
    ]
    if question_answering:
        lines.append(
            f"MLPerf bert-99 (defined for BERT-large): f1 >= {MLPERF_BERT99_F1}: "
            f"{'PASS' if judgement['meets_mlperf_bert99_target'] else 'FAIL'}"
        )
    return "\n".join(lines) + "\n"


def write_accuracy_txt(
    path: str | Path, metrics: dict[str, float], judgement: dict[str, Any], question_answering: bool
) -> None:
    atomic_write_text(path, accuracy_text(metrics, judgement, question_answering))
