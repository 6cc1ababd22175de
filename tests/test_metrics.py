"""Tests of the GLUE metrics against hand-computed values and against scipy and scikit-learn."""

import logging
import math

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from bertprune.data.glue import GLUE_TASKS
from bertprune.metrics import (
    METRICS,
    accuracy,
    binary_f1,
    compute_glue_metrics,
    matthews_correlation,
    pearson,
    primary_metric,
    spearman,
)

# tp=2 (positions 0 and 4), fp=1 (position 1), fn=1 (position 3), tn=1 (position 2).
BINARY_PREDICTIONS = np.array([1, 1, 0, 0, 1])
BINARY_LABELS = np.array([1, 0, 0, 1, 1])


# Hand-computed values


def test_accuracy_hand_computed():
    assert accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == pytest.approx(75.0)
    assert accuracy(np.array([2, 1]), np.array([2, 1])) == pytest.approx(100.0)
    assert accuracy(np.array([0]), np.array([1])) == pytest.approx(0.0)


def test_binary_f1_hand_computed():
    # F1 = 2tp / (2tp + fp + fn) = 4 / 6.
    assert binary_f1(BINARY_PREDICTIONS, BINARY_LABELS) == pytest.approx(200.0 / 3.0)


def test_binary_f1_without_positives():
    assert binary_f1(np.array([0, 0]), np.array([0, 0])) == 0.0
    assert binary_f1(np.array([0, 0]), np.array([1, 1])) == 0.0


def test_matthews_hand_computed():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2 - 1) / sqrt(3*3*2*2) = 1/6.
    assert matthews_correlation(BINARY_PREDICTIONS, BINARY_LABELS) == pytest.approx(100.0 / 6.0)
    assert matthews_correlation(BINARY_LABELS, BINARY_LABELS) == pytest.approx(100.0)
    assert matthews_correlation(1 - BINARY_LABELS, BINARY_LABELS) == pytest.approx(-100.0)


def test_matthews_constant_predictions_zero():
    assert matthews_correlation(np.zeros(5, dtype=np.int64), BINARY_LABELS) == 0.0


def test_pearson_hand_computed():
    # Deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): r = 3 / sqrt(2 * 14/3).
    expected = 100.0 * 3.0 / math.sqrt(2.0 * 14.0 / 3.0)
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(expected)
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-100.0)


def test_spearman_hand_computed():
    # Rank differences (0, -1, 1, 0): rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8.
    assert spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(80.0)
    # Ties get average ranks (1, 2.5, 2.5, 4): rho = 4.5 / sqrt(4.5 * 5).
    tied = spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert tied == pytest.approx(100.0 * 4.5 / math.sqrt(4.5 * 5.0))
    # A monotone but nonlinear relation has rank correlation 1.
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 10.0, 1000.0])) == pytest.approx(100.0)


def test_correlation_constant_input_nan(caplog):
    with caplog.at_level(logging.WARNING, logger="bertprune.metrics"):
        assert math.isnan(pearson(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])))
        assert math.isnan(spearman(np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])))
    assert "Pearson correlation is undefined" in caplog.text
    assert "Spearman correlation is undefined" in caplog.text


# Agreement with scipy and scikit-learn on random arrays


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=500)
    predictions = np.where(rng.random(500) < 0.8, labels, 1 - labels)
    assert accuracy(predictions, labels) == pytest.approx(100.0 * sklearn.metrics.accuracy_score(labels, predictions))
    assert binary_f1(predictions, labels) == pytest.approx(100.0 * sklearn.metrics.f1_score(labels, predictions))
    expected_mcc = 100.0 * sklearn.metrics.matthews_corrcoef(labels, predictions)
    assert matthews_correlation(predictions, labels) == pytest.approx(expected_mcc)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=400)
    predictions = np.where(rng.random(400) < 0.6, labels, rng.integers(0, 3, size=400))
    assert accuracy(predictions, labels) == pytest.approx(100.0 * sklearn.metrics.accuracy_score(labels, predictions))
    expected_mcc = 100.0 * sklearn.metrics.matthews_corrcoef(labels, predictions)
    assert matthews_correlation(predictions, labels) == pytest.approx(expected_mcc)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0.0, 5.0, size=300).astype(np.float32)
    predictions = labels + rng.normal(0.0, 1.0, size=300).astype(np.float32)
    predictions[:20] = np.round(predictions[:20])  # introduce ties
    expected_pearson = 100.0 * scipy.stats.pearsonr(predictions.astype(np.float64), labels.astype(np.float64))[0]
    expected_spearman = 100.0 * scipy.stats.spearmanr(predictions, labels)[0]
    assert pearson(predictions, labels) == pytest.approx(expected_pearson)
    assert spearman(predictions, labels) == pytest.approx(expected_spearman)


def test_metrics_return_python_float():
    for name, metric in METRICS.items():
        value = metric(BINARY_PREDICTIONS, BINARY_LABELS)
        assert type(value) is float, name


def test_boolean_inputs_accepted():
    predictions = BINARY_PREDICTIONS.astype(bool)
    labels = BINARY_LABELS.astype(bool)
    assert binary_f1(predictions, labels) == pytest.approx(200.0 / 3.0)
    assert accuracy(predictions, labels) == pytest.approx(60.0)


# Input errors


@pytest.mark.parametrize("name", list(METRICS))
def test_length_mismatch_rejected(name):
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        METRICS[name](np.array([0, 1, 1]), np.array([0, 1]))


@pytest.mark.parametrize("name", list(METRICS))
def test_empty_input_rejected(name):
    with pytest.raises(ValueError, match="empty"):
        METRICS[name](np.array([], dtype=np.int64), np.array([], dtype=np.int64))


@pytest.mark.parametrize("name", list(METRICS))
def test_logits_rejected(name):
    with pytest.raises(ValueError, match="argmax"):
        METRICS[name](np.zeros((4, 2)), np.zeros(4, dtype=np.int64))


@pytest.mark.parametrize("name", list(METRICS))
def test_non_finite_rejected(name):
    with pytest.raises(ValueError, match="1 non-finite values"):
        METRICS[name](np.array([0.0, np.nan, 1.0]), np.array([0.0, 1.0, 1.0]))


def test_string_input_rejected():
    with pytest.raises(ValueError, match="numeric"):
        accuracy(np.array(["a", "b"]), np.array(["a", "b"]))


def test_binary_f1_rejects_other_classes():
    with pytest.raises(ValueError, match=r"0/1 predictions, found \[2\]"):
        binary_f1(np.array([0, 2, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"0/1 labels, found \[-1\]"):
        binary_f1(np.array([0, 1, 1]), np.array([0, -1, 1]))


def test_correlation_single_example_rejected():
    with pytest.raises(ValueError, match="at least two"):
        pearson(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="at least two"):
        spearman(np.array([1.0]), np.array([1.0]))


# compute_glue_metrics and primary_metric


def test_compute_with_spec():
    result = compute_glue_metrics(GLUE_TASKS["mrpc"], BINARY_PREDICTIONS, BINARY_LABELS)
    assert list(result) == ["accuracy", "f1"]
    assert result["accuracy"] == pytest.approx(60.0)
    assert result["f1"] == pytest.approx(200.0 / 3.0)


def test_compute_with_task_name():
    result = compute_glue_metrics("stsb", np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert list(result) == ["pearson", "spearman"]
    assert result["spearman"] == pytest.approx(80.0)
    assert result["pearson"] == pytest.approx(80.0)


def test_compute_with_metric_names():
    single = compute_glue_metrics("matthews_correlation", BINARY_PREDICTIONS, BINARY_LABELS)
    assert single == {"matthews_correlation": pytest.approx(100.0 / 6.0)}
    several = compute_glue_metrics(["f1", "accuracy"], BINARY_PREDICTIONS, BINARY_LABELS)
    assert list(several) == ["f1", "accuracy"]


def test_compute_every_task():
    for spec in GLUE_TASKS.values():
        if spec.is_regression:
            predictions, labels = np.array([0.5, 2.0, 4.5]), np.array([1.0, 2.5, 4.0])
        else:
            predictions, labels = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
        result = compute_glue_metrics(spec, predictions, labels)
        assert list(result) == list(spec.metric_names), spec.name
        assert spec.primary_metric in result, spec.name


def test_compute_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown metrics \\['bleu'\\]"):
        compute_glue_metrics(["accuracy", "bleu"], BINARY_PREDICTIONS, BINARY_LABELS)
    with pytest.raises(ValueError, match="unknown GLUE task 'bleu'"):
        compute_glue_metrics("bleu", BINARY_PREDICTIONS, BINARY_LABELS)
    with pytest.raises(ValueError, match="no metric names"):
        compute_glue_metrics([], BINARY_PREDICTIONS, BINARY_LABELS)


def test_primary_metric_per_task():
    assert primary_metric("mrpc") == "accuracy"
    assert primary_metric("qqp") == "accuracy"
    assert primary_metric("stsb") == "spearman"
    assert primary_metric("cola") == "matthews_correlation"
    assert primary_metric("sst2") == "accuracy"
    assert primary_metric(GLUE_TASKS["mnli"]) == "accuracy"
    with pytest.raises(ValueError, match="supported tasks"):
        primary_metric("squad")
