"""The query sample library: pre-tokenized dev-set samples that LoadGen queries by index.

Samples are tokenized once, before LoadGen starts, so tokenization is never timed. SQuAD
samples are the features of the MLPerf reference procedure (10,833 on dev-v1.1.json at length
384). Classification and regression samples are the task's encoded dev set, padded to a fixed
length. Every sample stays in memory, so loading a sample only records that LoadGen may query it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import mlperf_loadgen as lg
import numpy as np

logger = logging.getLogger(__name__)

# The Hugging Face input names, in the order that bertprune.tasks.MODEL_INPUTS uses. This module
# does not import bertprune.tasks, so the LoadGen worker process does not import torch.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# ONNX input names per naming scheme, keyed by the Hugging Face input name. The schemes are those
# of the MLPerf Inference BERT fp32 and int8 reference models.
INPUT_NAME_SCHEMES = {
    "mlperf_fp32": {"input_ids": "input_ids", "attention_mask": "input_mask", "token_type_ids": "segment_ids"},
    "mlperf_int8": {"input_ids": "input_ids", "attention_mask": "attention_mask", "token_type_ids": "token_type_ids"},
}

# Every ONNX input name that an export may use, mapped to the Hugging Face input it carries.
ONNX_TO_MODEL_INPUT = {
    onnx_name: model_name for scheme in INPUT_NAME_SCHEMES.values() for model_name, onnx_name in scheme.items()
}

QUESTION_ANSWERING = "question_answering"
TASK_KINDS = ("classification", "regression", QUESTION_ANSWERING)


def onnx_input_names(model_inputs: Sequence[str], scheme: str) -> tuple[str, ...]:
    """Return the ONNX names of the given Hugging Face inputs under a naming scheme."""
    if scheme not in INPUT_NAME_SCHEMES:
        raise ValueError(f"unknown input naming scheme {scheme!r}; use one of {', '.join(INPUT_NAME_SCHEMES)}")
    return tuple(INPUT_NAME_SCHEMES[scheme][name] for name in model_inputs)


@dataclass
class SampleSet:
    """Model inputs of every sample, each an int64 array [num_samples, seq_len] keyed by Hugging Face name."""

    kind: str
    inputs: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; use one of {', '.join(TASK_KINDS)}")
        missing = [name for name in MODEL_INPUTS[:2] if name not in self.inputs]
        if missing:
            raise ValueError(f"sample set lacks the inputs {', '.join(missing)}")
        shapes = {name: array.shape for name, array in self.inputs.items()}
        if len(set(shapes.values())) != 1 or len(self.inputs["input_ids"].shape) != 2:
            raise ValueError(f"sample inputs must share one 2-D shape [num_samples, seq_len], got {shapes}")
        self.inputs = {name: np.ascontiguousarray(array, dtype=np.int64) for name, array in self.inputs.items()}
        self.lengths = self.inputs["attention_mask"].sum(axis=1).astype(np.int64)

    def __len__(self) -> int:
        return self.inputs["input_ids"].shape[0]

    @property
    def seq_len(self) -> int:
        return self.inputs["input_ids"].shape[1]

    def feed(self, onnx_names: Iterable[str], index: np.ndarray, width: int | None = None) -> dict[str, np.ndarray]:
        """Return the ONNX Runtime feed for samples `index`, cut to the first `width` positions."""
        width = self.seq_len if width is None else width
        feed = {}
        for onnx_name in onnx_names:
            model_name = ONNX_TO_MODEL_INPUT.get(onnx_name)
            if model_name == "token_type_ids" and model_name not in self.inputs:
                # Tokenizers without segment ids (RoBERTa's) leave them out, and Hugging Face
                # models then use zeros, so the feed does the same.
                feed[onnx_name] = np.zeros((len(index), width), dtype=np.int64)
                continue
            if model_name is None or model_name not in self.inputs:
                raise ValueError(
                    f"the ONNX model takes an input {onnx_name!r} that the samples do not provide "
                    f"(they have {', '.join(self.inputs)})"
                )
            feed[onnx_name] = np.ascontiguousarray(self.inputs[model_name][index, :width])
        return feed

    def save(self, path: str | Path) -> None:
        """Write the samples to an `.npz` file through a temporary file and a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, kind=np.array(self.kind), **self.inputs)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> SampleSet:
        with np.load(path, allow_pickle=False) as archive:
            kind = str(archive["kind"])
            inputs = {name: archive[name] for name in MODEL_INPUTS if name in archive.files}
        return cls(kind=kind, inputs=inputs)


def squad_sample_set(features) -> SampleSet:
    """Return the samples of SQuAD features (a list of bertprune.data.squad.SquadFeature)."""
    from bertprune.data.squad import features_to_arrays

    arrays = features_to_arrays(features, with_positions=False)
    return SampleSet(kind=QUESTION_ANSWERING, inputs={name: arrays[name] for name in MODEL_INPUTS})


def padded_sample_set(columns: dict[str, list[np.ndarray]], seq_len: int, kind: str) -> SampleSet:
    """Return the samples of an encoded set's columns (bertprune.tasks.EncodedSet.columns), zero-padded to `seq_len`."""
    inputs = {}
    for name, rows in columns.items():
        if name not in MODEL_INPUTS:
            continue
        padded = np.zeros((len(rows), seq_len), dtype=np.int64)
        for index, row in enumerate(rows):
            if len(row) > seq_len:
                raise ValueError(f"sample {index} has {len(row)} tokens, more than the padded length {seq_len}")
            padded[index, : len(row)] = row
        inputs[name] = padded
    return SampleSet(kind=kind, inputs=inputs)


class QuerySampleLibrary:
    """The LoadGen query sample library over a SampleSet held in memory."""

    def __init__(self, samples: SampleSet):
        self.samples = samples
        self.loaded: set[int] = set()
        self.handle: int | None = None

    def load_samples(self, indices: list[int]) -> None:
        self.loaded.update(indices)
        logger.debug("LoadGen loaded %d samples", len(indices))

    def unload_samples(self, indices: list[int]) -> None:
        self.loaded.difference_update(indices)

    def check_loaded(self, indices: Iterable[int]) -> None:
        """Raise RuntimeError for a queried sample that LoadGen did not load first."""
        unloaded = [index for index in indices if index not in self.loaded]
        if unloaded:
            raise RuntimeError(f"LoadGen queried {len(unloaded)} samples that it did not load, e.g. {unloaded[:5]}")

    def construct(self) -> int:
        count = len(self.samples)
        self.handle = lg.ConstructQSL(count, count, self.load_samples, self.unload_samples)
        return self.handle

    def destroy(self) -> None:
        if self.handle is not None:
            lg.DestroyQSL(self.handle)
            self.handle = None
