"""Ablation of the pruning stages: search only, + rearrangement, + mask tuning.

For one experiment whose dense model is ready (`make finetune`, or a fine-tuned model.source), and
for each seed (which draws the calibration sample), the mask gradients are collected once and
every constraint is pruned three ways. Each variant is scored on the dev set through the masked
model (the sliced model computes the same outputs). Results go to
results/<experiment>/ablation.json and a Markdown table is printed.

    python scripts/ablation.py --experiment experiments/minilm-sst2.yaml --constraints 0.5 0.6 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time

import torch
from tabulate import tabulate

from bertprune.arch import get_adapter
from bertprune.config import load_config
from bertprune.cost import MacCostModel, average_token_length
from bertprune.experiment import ExperimentPaths, dense_model_source
from bertprune.importance import collect_mask_gradients
from bertprune.masking import apply_masks
from bertprune.models import load_model, load_tokenizer
from bertprune.pipeline import without_labels
from bertprune.provenance import atomic_write_json, provenance
from bertprune.rearrange import rearrange_masks
from bertprune.search import search_masks
from bertprune.tasks import calibration_set, make_task
from bertprune.tuning import TuningOptions, tune_masks

logger = logging.getLogger("ablation")

VARIANTS = ("search", "search + rearrange", "search + rearrange + tune")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="experiment YAML file")
    parser.add_argument("--results-dir", default="results", help="root folder of results (default: results)")
    parser.add_argument("--constraints", type=float, nargs="+", default=[0.5, 0.6], help="fractions of MACs kept")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the calibration sample")
    arguments = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = load_config(arguments.experiment)
    paths = ExperimentPaths(config, arguments.results_dir)
    source = dense_model_source(config, paths)
    tokenizer = load_tokenizer(source)
    task = make_task(config, tokenizer)
    model = load_model(source, task.kind, task.num_labels)
    adapter = get_adapter(model)
    cost = MacCostModel.for_shape(adapter.shape(), average_token_length(task.dev_set().token_lengths()))
    dense_metric = task.evaluate(model, config.eval.batch_size, desc="evaluate dense")[task.primary_metric]
    options = TuningOptions(cls_only_last_ffn=config.prune.cls_only_last_ffn and task.kind != "question_answering")

    runs = []
    for seed in arguments.seeds:
        calibration = calibration_set(task, config.prune.num_samples, seed)
        gradients = collect_mask_gradients(model, adapter, calibration.batches(config.prune.batch_size, with_labels=True))
        unlabelled = without_labels(calibration, config.prune.batch_size)
        for constraint in arguments.constraints:
            searched = search_masks(gradients.head_importance(), gradients.neuron_importance(), cost, constraint)
            teacher = search_masks(gradients.head_importance(), gradients.neuron_importance(), cost, math.sqrt(constraint))
            head = rearrange_masks(gradients.head, searched.head_mask)
            neuron = rearrange_masks(gradients.neuron, searched.neuron_mask)
            started = time.perf_counter()
            tuned = tune_masks(model, adapter, unlabelled, head, neuron, teacher.head_mask, teacher.neuron_mask, options)
            logger.info("tuning took %.0f s", time.perf_counter() - started)
            masks = {
                VARIANTS[0]: (searched.head_mask, searched.neuron_mask),
                VARIANTS[1]: (head, neuron),
                VARIANTS[2]: (tuned.head_mask, tuned.neuron_mask),
            }
            for variant, (head_mask, neuron_mask) in masks.items():
                with torch.no_grad(), apply_masks(adapter, head_mask, neuron_mask):
                    metrics = task.evaluate(model, config.eval.batch_size, desc=f"{variant} c={constraint}")
                runs.append({"seed": seed, "constraint": constraint, "variant": variant, "metric": metrics[task.primary_metric]})
                logger.info("seed %d, constraint %.2f, %s: %s %.2f", seed, constraint, variant, task.primary_metric, runs[-1]["metric"])

    rows = []
    for constraint in arguments.constraints:
        for variant in VARIANTS:
            values = [run["metric"] for run in runs if run["constraint"] == constraint and run["variant"] == variant]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append([constraint, variant, f"{statistics.mean(values):.2f} ± {spread:.2f}", " / ".join(f"{v:.2f}" for v in values)])
    table = tabulate(rows, headers=["constraint", "stages", f"{task.primary_metric} mean ± std", "per seed"], tablefmt="github")
    print(f"dense {task.primary_metric}: {dense_metric:.2f}\n{table}")
    atomic_write_json(
        paths.root / "ablation.json",
        {"dense_metric": dense_metric, "metric": task.primary_metric, "runs": runs, "table": table, "provenance": provenance({})},
    )


if __name__ == "__main__":
    main()
