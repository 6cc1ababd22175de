"""The system under test: ONNX Runtime running LoadGen's Offline query in batches.

The Offline query carries every sample at once. The SUT sorts its samples by token count,
longest first, runs them in batches of `batch_size`, and with `trim_padding` cuts each batch to
its longest sample. The padding mask hides the cut positions, so the logits of the kept
positions do not change. Each batch is reported to LoadGen with one QuerySamplesComplete call
from the thread that LoadGen calls, so no thread is started per sample.

Responses are float32: [seq_len, 2] per question-answering sample (column 0 start logits,
column 1 end logits), and the logits of each classification or regression sample. Every padding
position of a question-answering response contains -10000, the value that the MLPerf accuracy
script pads short responses with, whether or not the batch computed it. So a response does not
depend on the batch it ran in (apart from rounding), and a padding position never displaces a
token from post-processing's n-best starts and ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import onnxruntime
from tqdm import tqdm

from bertprune.mlperf.qsl import QUESTION_ANSWERING, QuerySampleLibrary, SampleSet

logger = logging.getLogger(__name__)

# The start and end logit of a padding position in a question-answering response.
PADDING_LOGIT = -10000.0


def create_session(path: str | Path, intra_op_threads: int = 0) -> onnxruntime.InferenceSession:
    """Open an ONNX Runtime CPU session with all graph optimizations and sequential execution.

    `intra_op_threads` 0 lets ONNX Runtime choose (one thread per physical core).
    """
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split positions 0..len(lengths)-1 into batches of similar length, longest first."""
    order = np.argsort(-lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class OnnxRuntimeSut:
    """Runs an ONNX model over QSL samples, for LoadGen or called directly through `predict`."""

    def __init__(
        self,
        model_path: str | Path,
        qsl: QuerySampleLibrary,
        *,
        batch_size: int,
        intra_op_threads: int = 0,
        trim_padding: bool = True,
        show_progress: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.qsl = qsl
        self.samples: SampleSet = qsl.samples
        self.batch_size = batch_size
        self.trim_padding = trim_padding
        self.show_progress = show_progress
        self.session = create_session(model_path, intra_op_threads)
        self.onnx_inputs = [item.name for item in self.session.get_inputs()]
        self.question_answering = self.samples.kind == QUESTION_ANSWERING
        self.handle: int | None = None
        self.error: BaseException | None = None

    def run_batch(self, index: np.ndarray) -> np.ndarray:
        """Return the float32 responses of samples `index`, one row per sample."""
        width = int(self.samples.lengths[index].max()) if self.trim_padding else self.samples.seq_len
        width = max(width, 1)
        outputs = self.session.run(None, self.samples.feed(self.onnx_inputs, index, width))
        if not self.question_answering:
            return np.ascontiguousarray(outputs[0], dtype=np.float32)
        start_logits, end_logits = outputs
        is_token = self.samples.inputs["attention_mask"][index, :width].astype(bool)
        responses = np.full((len(index), self.samples.seq_len, 2), PADDING_LOGIT, dtype=np.float32)
        responses[:, :width, 0] = np.where(is_token, start_logits, PADDING_LOGIT)
        responses[:, :width, 1] = np.where(is_token, end_logits, PADDING_LOGIT)
        return responses

    def predict(self, indices: np.ndarray) -> np.ndarray:
        """Return the responses of samples `indices` in their given order, computed in sorted batches."""
        indices = np.asarray(indices, dtype=np.int64)
        results: np.ndarray | None = None
        for batch in length_sorted_batches(self.samples.lengths[indices], self.batch_size):
            responses = self.run_batch(indices[batch])
            if results is None:
                results = np.empty((len(indices),) + responses.shape[1:], dtype=np.float32)
            results[batch] = responses
        if results is None:
            raise ValueError("predict needs at least one sample index")
        return results

    def issue_queries(self, query_samples: list) -> None:
        """Run the query batch by batch and complete each batch. LoadGen calls this with every sample of the query."""
        ids = np.array([sample.id for sample in query_samples], dtype=np.uint64)
        indices = np.array([sample.index for sample in query_samples], dtype=np.int64)
        batches = length_sorted_batches(self.samples.lengths[indices], self.batch_size)
        progress = tqdm(total=len(indices), desc="LoadGen query", unit="sample", disable=not self.show_progress)
        done = 0
        try:
            self.qsl.check_loaded(np.unique(indices).tolist())
            for batch in batches:
                responses = self.run_batch(indices[batch])
                # `responses` must stay alive until QuerySamplesComplete returns, because LoadGen
                # reads the data at these addresses.
                completions = [
                    lg.QuerySampleResponse(int(ids[position]), responses[row].ctypes.data, responses[row].nbytes)
                    for row, position in enumerate(batch)
                ]
                lg.QuerySamplesComplete(completions)
                done += len(batch)
                progress.update(len(batch))
        except Exception as error:  # noqa: BLE001 - LoadGen cannot receive Python exceptions
            # An exception cannot cross into LoadGen's thread, and LoadGen waits for every sample,
            # so the remaining samples are completed without data and the worker reports the error.
            logger.exception("the SUT failed after %d of %d samples", done, len(indices))
            self.error = error
            remaining = np.concatenate(batches)[done:]
            lg.QuerySamplesComplete([lg.QuerySampleResponse(int(ids[position]), 0, 0) for position in remaining])
        finally:
            progress.close()

    def flush_queries(self) -> None:
        """Do nothing, because issue_queries completes every sample before it returns."""

    def construct(self) -> int:
        self.handle = lg.ConstructSUT(self.issue_queries, self.flush_queries)
        return self.handle

    def destroy(self) -> None:
        if self.handle is not None:
            lg.DestroySUT(self.handle)
            self.handle = None
