"""GLUE evaluation metrics in percent (0 to 100), the scale on which GLUE results are reported.

Classification metrics take integer class ids, not logits. Correlation metrics take
regression scores. Every function raises ValueError on empty inputs, inputs of different
lengths, inputs that are not 1-D, and non-finite values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import numpy as np
import scipy.stats
import sklearn.metrics

from bertprune.data.glue import GlueTaskSpec, get_glue_task

logger = logging.getLogger(__name__)


def _validate_pair(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"predictions and labels must be 1-D, got shapes {predictions.shape} and {labels.shape}; "
            "take the argmax of classification logits first"
        )
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("predictions and labels are empty")
    for name, values in (("predictions", predictions), ("labels", labels)):
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {values.dtype}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contain {int(np.sum(~np.isfinite(values)))} non-finite values")
    return predictions, labels


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Return the percentage of predictions equal to their label."""
    predictions, labels = _validate_pair(predictions, labels)
    return float(np.mean(predictions == labels) * 100.0)


def binary_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Return the F1 score of class 1 in percent, or 0 when neither side contains class 1.

    Raises ValueError when a value other than 0 or 1 appears.
    """
    predictions, labels = _validate_pair(predictions, labels)
    for name, values in (("predictions", predictions), ("labels", labels)):
        invalid = np.setdiff1d(np.unique(values), [0, 1])
        if invalid.size:
            raise ValueError(f"binary F1 needs 0/1 {name}, found {invalid[:5].tolist()}")
    predicted_positive = predictions == 1
    actual_positive = labels == 1
    true_positives = int(np.sum(predicted_positive & actual_positive))
    false_positives = int(np.sum(predicted_positive & ~actual_positive))
    false_negatives = int(np.sum(~predicted_positive & actual_positive))
    denominator = 2 * true_positives + false_positives + false_negatives
    if denominator == 0:
        return 0.0
    return 2.0 * true_positives / denominator * 100.0


def _constant_input(predictions: np.ndarray, labels: np.ndarray, metric: str) -> bool:
    if np.all(predictions == predictions[0]) or np.all(labels == labels[0]):
        logger.warning("%s is undefined because an input is constant; returning NaN", metric)
        return True
    return False


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Return the Pearson correlation times 100, or NaN when either input is constant."""
    predictions, labels = _validate_pair(predictions, labels)
    if len(labels) < 2:
        raise ValueError("a correlation needs at least two examples")
    if _constant_input(predictions, labels, "Pearson correlation"):
        return math.nan
    result = scipy.stats.pearsonr(predictions.astype(np.float64), labels.astype(np.float64))
    return float(result.statistic) * 100.0


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Return the Spearman rank correlation times 100, or NaN when either input is constant."""
    predictions, labels = _validate_pair(predictions, labels)
    if len(labels) < 2:
        raise ValueError("a correlation needs at least two examples")
    if _constant_input(predictions, labels, "Spearman correlation"):
        return math.nan
    result = scipy.stats.spearmanr(predictions, labels)
    return float(result.statistic) * 100.0


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Return the Matthews correlation coefficient times 100.

    It is 0 when undefined, for example when all predictions are one class, because
    `sklearn.metrics.matthews_corrcoef` returns 0 there.
    """
    predictions, labels = _validate_pair(predictions, labels)
    return float(sklearn.metrics.matthews_corrcoef(labels, predictions)) * 100.0


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "pearson": pearson,
    "spearman": spearman,
    "matthews_correlation": matthews_correlation,
}


def _resolve_metric_names(spec_or_metric_names: GlueTaskSpec | str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(spec_or_metric_names, GlueTaskSpec):
        return spec_or_metric_names.metric_names
    if isinstance(spec_or_metric_names, str):
        if spec_or_metric_names in METRICS:
            return (spec_or_metric_names,)
        return get_glue_task(spec_or_metric_names).metric_names
    names = tuple(spec_or_metric_names)
    if not names:
        raise ValueError("no metric names given")
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; supported metrics: {', '.join(METRICS)}")
    return names


def compute_glue_metrics(
    spec_or_metric_names: GlueTaskSpec | str | Iterable[str],
    predictions: np.ndarray,
    labels: np.ndarray,
) -> dict[str, float]:
    """Compute the metrics of a GLUE task, or the named metrics, in percent.

    `spec_or_metric_names` is a `GlueTaskSpec`, a task name such as "mrpc", a metric name,
    or a sequence of metric names. `predictions` are class ids for classification and scores
    for regression.
    """
    names = _resolve_metric_names(spec_or_metric_names)
    return {name: METRICS[name](predictions, labels) for name in names}


def primary_metric(task: str | GlueTaskSpec) -> str:
    """Return the metric name that ranks results of a GLUE task."""
    return get_glue_task(task).primary_metric
