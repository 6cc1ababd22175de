"""Tasks: reading a task's data, encoding it for a model, and scoring a model on its dev set.

Three families share one interface: GLUE sentence (pair) classification and STS-B regression,
SQuAD 1.1 / 2.0 extractive question answering, and the tweet sentiment task of the default
experiment. Every task gives padded batches with labels (for fine-tuning and the Fisher
gradients), batches without labels (for mask tuning) and a dev-set evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bertprune.config import GLUE_TASK_NAMES, SQUAD_TASK_NAMES, ExperimentConfig
from bertprune.data import squad
from bertprune.data.glue import SentenceExamples, get_glue_task, load_glue_from_hub, read_glue_tsv
from bertprune.data.tweets import default_tweet_corpus_path, read_tweet_sentiment, split_train_dev
from bertprune.metrics import compute_glue_metrics
from bertprune.provenance import sha256_file

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Logit at padding positions of a question-answering output, as MLPerf's accuracy script pads.
PADDING_LOGIT = -10000.0


@dataclass
class EncodedSet:
    """Tokenised rows, each a 1-D int64 array per column, padded per batch when batched."""

    columns: dict[str, list[np.ndarray]]
    labels: dict[str, np.ndarray]  # "labels", or "start_positions" and "end_positions"

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def token_lengths(self) -> np.ndarray:
        return np.array([int(mask.sum()) for mask in self.columns["attention_mask"]])

    def select(self, indices: Sequence[int]) -> EncodedSet:
        return EncodedSet(
            columns={name: [rows[i] for i in indices] for name, rows in self.columns.items()},
            labels={name: values[np.asarray(indices, dtype=np.int64)] for name, values in self.labels.items()},
        )

    def batches(
        self, batch_size: int, *, with_labels: bool, shuffle: bool = False, seed: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield dicts of tensors, right-padded with zeros to the longest row of each batch."""
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng(seed).permutation(len(self))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            width = max(len(self.columns["input_ids"][i]) for i in index)
            batch = {}
            for name, rows in self.columns.items():
                padded = np.zeros((len(index), width), dtype=np.int64)
                for row, i in enumerate(index):
                    padded[row, : len(rows[i])] = rows[i]
                batch[name] = torch.from_numpy(padded)
            if with_labels:
                for name, values in self.labels.items():
                    batch[name] = torch.from_numpy(values[index])
            yield batch

    def num_batches(self, batch_size: int) -> int:
        return (len(self) + batch_size - 1) // batch_size


class Task:
    """The interface that the fine-tuning, pruning and evaluation stages use."""

    kind: str  # "classification", "regression" or "question_answering"
    num_labels: int
    metric_names: tuple[str, ...]
    primary_metric: str

    def __init__(self, config: ExperimentConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer

    def train_set(self) -> EncodedSet:
        raise NotImplementedError

    def dev_set(self) -> EncodedSet:
        raise NotImplementedError

    def input_files(self) -> dict[str, str]:
        """Return sha256 hashes of the local data files this task reads (empty for the hub)."""
        return {}

    def scores(self, model: torch.nn.Module, encoded: EncodedSet, batch_size: int, desc: str) -> dict[str, np.ndarray]:
        """Run the model over an encoded set and return its outputs as arrays."""
        outputs: dict[str, list[np.ndarray]] = {}
        model.eval()
        with torch.no_grad():
            for batch in tqdm(
                encoded.batches(batch_size, with_labels=False),
                total=encoded.num_batches(batch_size),
                desc=desc,
                unit="batch",
            ):
                result = model(**{name: value for name, value in batch.items() if name in MODEL_INPUTS})
                for name in ("logits", "start_logits", "end_logits"):
                    value = getattr(result, name, None)
                    if value is not None:
                        outputs.setdefault(name, []).append(value.float().numpy())
        return {name: _concatenate_padded(parts) for name, parts in outputs.items()}

    def evaluate(self, model: torch.nn.Module, batch_size: int, desc: str = "evaluate") -> dict[str, float]:
        """Return the task metrics of a model on the dev set, in percent."""
        raise NotImplementedError

    def metrics_from_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Return the task metrics from the model outputs over the whole dev set."""
        raise NotImplementedError


def _concatenate_padded(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-batch outputs whose sequence axis may differ, padding with -10000."""
    if parts[0].ndim == 1 or all(part.shape[1:] == parts[0].shape[1:] for part in parts):
        return np.concatenate(parts)
    width = max(part.shape[1] for part in parts)
    padded = [np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=PADDING_LOGIT) for part in parts]
    return np.concatenate(padded)


class SentenceTask(Task):
    """GLUE tasks and the tweet sentiment task: one or two sentences in, a class or a score out."""

    def __init__(self, config: ExperimentConfig, tokenizer):
        super().__init__(config, tokenizer)
        name = config.task.name
        if name == "tweets":
            self.kind = "classification"
            self.num_labels = 2
            self.metric_names = ("accuracy", "f1")
            self.primary_metric = "accuracy"
        else:
            spec = get_glue_task(name)
            self.kind = "regression" if spec.is_regression else "classification"
            self.num_labels = spec.num_labels
            self.metric_names = spec.metric_names
            self.primary_metric = spec.primary_metric
        self._train: SentenceExamples | None = None
        self._dev: SentenceExamples | None = None
        self._files: dict[str, str] = {}
        mapping = config.model.model_to_dataset_labels
        if mapping is not None and sorted(mapping) != list(range(self.num_labels)):
            raise ValueError(
                f"model.model_to_dataset_labels must be a permutation of 0..{self.num_labels - 1}, got {mapping}"
            )
        self.model_to_dataset = np.array(mapping) if mapping is not None else None

    def _load(self) -> None:
        if self._train is not None:
            return
        task = self.config.task
        if task.name == "tweets":
            path = Path(task.train_file) if task.train_file else default_tweet_corpus_path()
            examples = read_tweet_sentiment(path)
            self._train, self._dev = split_train_dev(examples, dev_fraction=task.dev_fraction, seed=task.split_seed)
            self._files[path.name] = sha256_file(path)
        elif task.data_dir is not None:
            spec = get_glue_task(task.name)
            self._train = read_glue_tsv(spec, "train", task.data_dir)
            self._dev = read_glue_tsv(spec, "dev", task.data_dir)
            for split in ("train", "dev"):
                path = Path(task.data_dir) / spec.folder / spec.file_name(split)
                self._files[f"{spec.folder}/{path.name}"] = sha256_file(path)
        else:
            self._train = load_glue_from_hub(task.name, "train")
            self._dev = load_glue_from_hub(task.name, "dev")
        if task.max_train_examples is not None and task.max_train_examples < len(self._train):
            keep = np.sort(np.random.default_rng(task.split_seed).permutation(len(self._train))[: task.max_train_examples])
            self._train = self._train.subset(keep)
        if task.max_dev_examples is not None and task.max_dev_examples < len(self._dev):
            self._dev = self._dev.subset(np.arange(task.max_dev_examples))
        logger.info("task %s: %d train and %d dev examples", task.name, len(self._train), len(self._dev))

    def input_files(self) -> dict[str, str]:
        self._load()
        return dict(self._files)

    def _encode(self, examples: SentenceExamples) -> EncodedSet:
        encoded = self.tokenizer(
            examples.text_a,
            examples.text_b,
            truncation=True,
            max_length=self.config.task.max_seq_length,
        )
        columns = {name: [np.asarray(row, dtype=np.int64) for row in encoded[name]] for name in MODEL_INPUTS if name in encoded}
        labels = examples.labels
        if self.kind == "regression":
            labels = labels.astype(np.float32)
        elif self.model_to_dataset is not None:
            labels = np.argsort(self.model_to_dataset)[labels]
        return EncodedSet(columns=columns, labels={"labels": labels})

    def train_set(self) -> EncodedSet:
        self._load()
        return self._encode(self._train)

    def dev_set(self) -> EncodedSet:
        self._load()
        return self._encode(self._dev)

    def metrics_from_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        logits = outputs["logits"]
        if self.kind == "regression":
            predictions = logits.reshape(-1)
        else:
            predictions = logits.argmax(-1)
            if self.model_to_dataset is not None:
                predictions = self.model_to_dataset[predictions]
        return compute_glue_metrics(self.metric_names, predictions, self._dev.labels)

    def evaluate(self, model: torch.nn.Module, batch_size: int, desc: str = "evaluate") -> dict[str, float]:
        outputs = self.scores(model, self.dev_set(), batch_size, desc)
        return self.metrics_from_outputs(outputs)


class QuestionAnsweringTask(Task):
    """SQuAD 1.1 and 2.0 with the MLPerf reference feature procedure and n-best post-processing."""

    kind = "question_answering"
    num_labels = 2

    def __init__(self, config: ExperimentConfig, tokenizer):
        super().__init__(config, tokenizer)
        self.version_2 = config.task.name == "squad_v2"
        self.metric_names = ("exact_match", "f1")
        self.primary_metric = "f1"
        self._files: dict[str, str] = {}
        self._dev_examples: list[squad.SquadExample] | None = None
        self._dev_features: list[squad.SquadFeature] | None = None

    def _examples(self, split: str) -> list[squad.SquadExample]:
        task = self.config.task
        path = task.train_file if split == "train" else task.dev_file
        is_training = split == "train"
        if path is not None:
            examples = squad.read_squad_examples(path, version_2_with_negative=self.version_2, is_training=is_training)
            self._files[Path(path).name] = sha256_file(path)
        else:
            hub_split = "train" if split == "train" else "validation"
            examples = squad.load_squad_examples_from_hub(
                hub_split, version_2_with_negative=self.version_2, is_training=is_training
            )
        limit = task.max_train_examples if split == "train" else task.max_dev_examples
        if limit is not None and limit < len(examples):
            if split == "train":
                keep = np.sort(np.random.default_rng(task.split_seed).permutation(len(examples))[:limit])
                examples = [examples[i] for i in keep]
            else:
                examples = examples[:limit]
        return examples

    def _features(self, examples, is_training: bool) -> list[squad.SquadFeature]:
        task = self.config.task
        return squad.convert_examples_to_features(
            examples,
            self.tokenizer,
            max_seq_length=task.max_seq_length,
            doc_stride=task.doc_stride,
            max_query_length=task.max_query_length,
            is_training=is_training,
        )

    @staticmethod
    def _to_encoded(features: list[squad.SquadFeature], with_positions: bool) -> EncodedSet:
        arrays = squad.features_to_arrays(features, with_positions=with_positions)
        columns = {name: list(arrays[name]) for name in MODEL_INPUTS}
        labels = {name: arrays[name] for name in ("start_positions", "end_positions") if name in arrays}
        return EncodedSet(columns=columns, labels=labels)

    def input_files(self) -> dict[str, str]:
        return dict(self._files)

    def train_set(self) -> EncodedSet:
        features = self._features(self._examples("train"), is_training=True)
        return self._to_encoded(features, with_positions=True)

    def dev_examples_and_features(self) -> tuple[list[squad.SquadExample], list[squad.SquadFeature]]:
        if self._dev_examples is None:
            self._dev_examples = self._examples("dev")
            self._dev_features = self._features(self._dev_examples, is_training=False)
        return self._dev_examples, self._dev_features

    def dev_set(self) -> EncodedSet:
        _, features = self.dev_examples_and_features()
        return self._to_encoded(features, with_positions=False)

    def metrics_from_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        examples, features = self.dev_examples_and_features()
        # Padding positions get -10000, the value MLPerf pads short responses with, so that eval and
        # the LoadGen SUT (which cuts batches to their longest sample) rank the same n-best candidates.
        padding = squad.features_to_arrays(features, with_positions=False)["attention_mask"] == 0
        start_logits, end_logits = _mask_padding(outputs["start_logits"], padding), _mask_padding(outputs["end_logits"], padding)
        predictions = squad.postprocess_predictions(
            examples,
            features,
            start_logits,
            end_logits,
            version_2_with_negative=self.version_2,
        )
        return squad.squad_metrics(examples, predictions)

    def evaluate(self, model: torch.nn.Module, batch_size: int, desc: str = "evaluate") -> dict[str, float]:
        outputs = self.scores(model, self.dev_set(), batch_size, desc)
        return self.metrics_from_outputs(outputs)


def _mask_padding(logits: np.ndarray, padding: np.ndarray) -> np.ndarray:
    masked = np.array(logits, dtype=np.float32, copy=True)
    width = min(masked.shape[1], padding.shape[1])
    masked[:, :width][padding[:, :width]] = PADDING_LOGIT
    return masked


def make_task(config: ExperimentConfig, tokenizer) -> Task:
    """Return the task object for an experiment."""
    if config.task.name in SQUAD_TASK_NAMES:
        return QuestionAnsweringTask(config, tokenizer)
    if config.task.name in GLUE_TASK_NAMES or config.task.name == "tweets":
        return SentenceTask(config, tokenizer)
    raise ValueError(f"unknown task {config.task.name!r}")


def calibration_set(task: Task, num_samples: int, seed: int) -> EncodedSet:
    """Draw the calibration sample from the training set with a fixed seed."""
    train = task.train_set()
    if num_samples > len(train):
        logger.warning("asked for %d calibration samples, the training set has %d; using all", num_samples, len(train))
        num_samples = len(train)
    indices = np.sort(np.random.default_rng(seed).permutation(len(train))[:num_samples])
    return train.select(indices.tolist())

