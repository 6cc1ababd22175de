"""The eval stage: the dense and the pruned model on the task's dev set, side by side.

`metrics.json` holds, for each model, the task metric, encoder parameters, encoder MACs under
the pruning stage's cost model, and the heads and neurons kept per layer. It also records the
constraint, the per-stage pruning time, the masked-vs-sliced check and provenance. The schema is
documented in docs/metrics-schema.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tabulate import tabulate

from bertprune.arch import get_adapter
from bertprune.config import ExperimentConfig
from bertprune.cost import MacCostModel
from bertprune.experiment import ExperimentPaths, eval_key, invalidate_downstream, is_up_to_date, prune_key, require_record
from bertprune.models import load_model, load_pruned_model, load_tokenizer
from bertprune.pipeline import model_inputs_hash
from bertprune.provenance import atomic_write_json, provenance, sha256_tree
from bertprune.slicing import encoder_parameter_count
from bertprune.tasks import make_task

logger = logging.getLogger(__name__)

METRICS_FORMAT = 1


def _model_summary(model, cost: MacCostModel, metrics: dict[str, float], primary: str, seconds: float) -> dict[str, Any]:
    adapter = get_adapter(model)
    heads, neurons = adapter.kept_counts()
    return {
        "metric": {"name": primary, "value": metrics[primary]},
        "all_metrics": metrics,
        "encoder_parameters": encoder_parameter_count(adapter),
        "encoder_macs": cost.encoder_macs(sum(heads), sum(neurons)),
        "heads_per_layer": heads,
        "neurons_per_layer": neurons,
        "eval_seconds": seconds,
    }


def run_eval(config: ExperimentConfig, paths: ExperimentPaths, force: bool = False) -> dict[str, Any]:
    """Evaluate the dense and the pruned model and write metrics.json."""
    key = eval_key(config)
    if not force and is_up_to_date(paths.metrics, key, []):
        logger.info("evaluation is up to date (%s)", paths.metrics)
        record = require_record(paths.metrics, key, "eval")
        print(format_table(record))
        return record
    prune_record = require_record(paths.prune_record, prune_key(config), "prune")
    dense_source = prune_record["dense_model"]
    invalidate_downstream(paths, "eval")

    tokenizer = load_tokenizer(dense_source)
    task = make_task(config, tokenizer)
    cost = MacCostModel.for_shape(get_adapter(load_pruned_model(paths.pruned_model)).shape(), prune_record["seq_len"])

    summaries = {}
    for variant in ("dense", "pruned"):
        if variant == "dense":
            model = load_model(dense_source, task.kind, task.num_labels)
        else:
            model = load_pruned_model(paths.pruned_model)
        started = time.perf_counter()
        metrics = task.evaluate(model, config.eval.batch_size, desc=f"evaluate {variant}")
        summaries[variant] = _model_summary(model, cost, metrics, task.primary_metric, time.perf_counter() - started)
        logger.info("%s model: %s", variant, metrics)

    dense, pruned = summaries["dense"], summaries["pruned"]
    record = {
        "format": METRICS_FORMAT,
        "stage_key": key,
        "experiment": config.name,
        "task": config.task.name,
        "constraint": prune_record["constraint"],
        "seq_len": prune_record["seq_len"],
        "dense": dense,
        "pruned": pruned,
        "kept_mac_fraction": pruned["encoder_macs"] / dense["encoder_macs"],
        "kept_parameter_fraction": pruned["encoder_parameters"] / dense["encoder_parameters"],
        "metric_drop": dense["metric"]["value"] - pruned["metric"]["value"],
        "pruning_time_seconds": prune_record["time_seconds"],
        "stages": prune_record["stages"],
        "sanity": prune_record["sanity"],
        "config": config.to_dict(),
        "provenance": provenance(
            {
                **model_inputs_hash(dense_source),
                "pruned_model": sha256_tree(paths.pruned_model),
                **task.input_files(),
            }
        ),
    }
    atomic_write_json(paths.metrics, record)
    print(format_table(record))
    return record


def format_table(record: dict[str, Any]) -> str:
    """Return the dense-vs-pruned table printed at the end of an evaluation."""
    dense, pruned = record["dense"], record["pruned"]
    rows = [
        [f"{dense['metric']['name']} (dev)", f"{dense['metric']['value']:.2f}", f"{pruned['metric']['value']:.2f}"],
        ["encoder parameters", f"{dense['encoder_parameters']:,}", f"{pruned['encoder_parameters']:,}"],
        ["encoder MACs per sequence", f"{dense['encoder_macs']:.4g}", f"{pruned['encoder_macs']:.4g}"],
        ["heads kept", sum(dense["heads_per_layer"]), sum(pruned["heads_per_layer"])],
        ["neurons kept", sum(dense["neurons_per_layer"]), sum(pruned["neurons_per_layer"])],
    ]
    table = tabulate(rows, headers=["", "dense", "pruned"], tablefmt="github", disable_numparse=True)
    footer = (
        f"\n{record['experiment']}: constraint {record['constraint']}, kept {100 * record['kept_mac_fraction']:.1f}% "
        f"of encoder MACs, masked vs sliced max abs diff {record['sanity']['masked_vs_sliced_max_abs_diff']:.2g}, "
        f"pruning took {sum(record['pruning_time_seconds'].values()):.0f} s"
    )
    return table + footer
