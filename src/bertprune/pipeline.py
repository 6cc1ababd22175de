"""The fine-tune and prune stages of an experiment, as `make finetune` and `make prune` run them.

Pruning follows Kwon et al. (NeurIPS 2022): mask gradients and Fisher importance on the calibration sample, the
search under the MAC budget (and at sqrt(constraint) for the tuning teacher), per-layer
rearrangement, layer-wise least-squares tuning, and then physical slicing. Before the sliced
model is saved, it must reproduce the masked model's outputs; that difference is recorded.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from typing import Any

import torch
from safetensors.torch import save

from bertprune.arch import get_adapter
from bertprune.config import ExperimentConfig
from bertprune.cost import MacCostModel, average_token_length
from bertprune.experiment import (
    ExperimentPaths,
    dense_model_source,
    finetune_key,
    invalidate_downstream,
    is_up_to_date,
    prune_key,
    require_record,
    save_resolved_config,
)
from bertprune.finetune import finetune
from bertprune.importance import collect_mask_gradients
from bertprune.masking import apply_masks
from bertprune.models import kept_units, load_model, load_tokenizer, resolve_source, save_pruned_model
from bertprune.provenance import atomic_directory, atomic_write, atomic_write_json, provenance, sha256_tree
from bertprune.rearrange import rearrange_masks
from bertprune.search import search_masks
from bertprune.slicing import encoder_parameter_count, slice_model
from bertprune.tasks import MODEL_INPUTS, EncodedSet, Task, calibration_set, make_task
from bertprune.tuning import TuningOptions, tune_masks

logger = logging.getLogger(__name__)

# Batches of the dev set on which the masked and the sliced model must agree.
SANITY_BATCHES = 4
SANITY_BATCH_SIZE = 8


def model_inputs_hash(source: str) -> dict[str, str]:
    location, local = resolve_source(source)
    return {"model": sha256_tree(location)} if local else {"model": f"hub:{source}"}


def run_finetune(config: ExperimentConfig, paths: ExperimentPaths, force: bool = False) -> dict[str, Any] | None:
    """Fine-tune model.source on the task's training set and save it as the experiment's dense model."""
    if not config.finetune.enabled:
        logger.info("finetune.enabled is false: %s is pruned as it is", config.model.source)
        return None
    key = finetune_key(config)
    if not force and is_up_to_date(paths.finetune_record, key, [paths.finetuned_model]):
        logger.info("fine-tuning is up to date (%s)", paths.finetune_record)
        return require_record(paths.finetune_record, key, "finetune")

    tokenizer = load_tokenizer(config.model.source, config.model.revision)
    task = make_task(config, tokenizer)
    # The new task head is initialised while loading, so the seed must be set before it.
    torch.manual_seed(config.seed)
    model = load_model(config.model.source, task.kind, task.num_labels, config.model.revision, require_trained_head=False)
    train = task.train_set()
    invalidate_downstream(paths, "finetune")
    save_resolved_config(config, paths)
    summary = finetune(model, train, config, paths.finetune_checkpoint)
    metrics = task.evaluate(model, config.eval.batch_size, desc="evaluate fine-tuned")
    logger.info("fine-tuned model on dev: %s", metrics)

    with atomic_directory(paths.finetuned_model) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    record = {
        "stage_key": key,
        "model": str(paths.finetuned_model),
        "dev_metrics": metrics,
        **summary,
        "provenance": provenance({**model_inputs_hash(config.model.source), **task.input_files()}),
    }
    atomic_write_json(paths.finetune_record, record)
    if paths.finetune_checkpoint.exists():
        shutil.rmtree(paths.finetune_checkpoint)
    return record


def _sequence_length(config: ExperimentConfig, task: Task) -> tuple[float, str]:
    if config.prune.seq_len is not None:
        return config.prune.seq_len, "prune.seq_len"
    return average_token_length(task.dev_set().token_lengths()), "average dev-set token length"


def without_labels(encoded: EncodedSet, batch_size: int) -> list[dict[str, torch.Tensor]]:
    return [
        {name: value for name, value in batch.items() if name in MODEL_INPUTS}
        for batch in encoded.batches(batch_size, with_labels=False)
    ]


def _output_tensor(output) -> torch.Tensor:
    if getattr(output, "logits", None) is not None:
        return output.logits
    return torch.stack([output.start_logits, output.end_logits], dim=-1)


def masked_vs_sliced_difference(dense, sliced, adapter, head_mask, neuron_mask, batches) -> float:
    """Return the largest absolute difference between the masked and the sliced model's outputs."""
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            with apply_masks(adapter, head_mask, neuron_mask):
                masked = _output_tensor(dense(**batch))
            difference = (masked - _output_tensor(sliced(**batch))).abs().max().item()
            worst = max(worst, difference)
    return worst


def run_prune(config: ExperimentConfig, paths: ExperimentPaths, force: bool = False) -> dict[str, Any]:
    """Prune the experiment's dense model to the constraint and save the physically smaller model."""
    key = prune_key(config)
    source = dense_model_source(config, paths)
    if not force and is_up_to_date(paths.prune_record, key, [paths.pruned_model, paths.masks]):
        record = require_record(paths.prune_record, key, "prune")
        # The stage key hashes configuration only, so a dense model trained or replaced again
        # under the same configuration shows in its hash.
        if record["provenance"]["inputs_sha256"].get("model") == model_inputs_hash(source)["model"]:
            logger.info("pruning is up to date (%s)", paths.prune_record)
            return record
        logger.info("the dense model %s changed since it was pruned; pruning it again", source)
    if config.finetune.enabled:
        require_record(paths.finetune_record, finetune_key(config), "finetune")
    settings = config.prune
    timings: dict[str, float] = {}

    tokenizer = load_tokenizer(source, None if config.finetune.enabled else config.model.revision)
    task = make_task(config, tokenizer)
    model = load_model(source, task.kind, task.num_labels, None if config.finetune.enabled else config.model.revision)
    adapter = get_adapter(model)
    shape = adapter.shape()

    calibration = calibration_set(task, settings.num_samples, config.seed)
    invalidate_downstream(paths, "prune")
    save_resolved_config(config, paths)
    seq_len, seq_len_source = _sequence_length(config, task)
    cost = MacCostModel.for_shape(shape, seq_len)
    logger.info("MAC model at sequence length %.2f (%s)", seq_len, seq_len_source)

    # Stage 1: mask gradients and Fisher importance.
    started = time.perf_counter()
    gradients = collect_mask_gradients(
        model,
        adapter,
        calibration.batches(settings.batch_size, with_labels=True),
        mode=settings.gradient_mode,
        num_batches=calibration.num_batches(settings.batch_size),
    )
    head_importance, neuron_importance = gradients.head_importance(), gradients.neuron_importance()
    timings["importance"] = time.perf_counter() - started

    # Stage 2: search under the budget, and at sqrt(constraint) for the teacher of mask tuning.
    started = time.perf_counter()
    searched = search_masks(head_importance, neuron_importance, cost, settings.constraint)
    teacher = search_masks(head_importance, neuron_importance, cost, math.sqrt(settings.constraint))
    timings["search"] = time.perf_counter() - started

    # Stage 3: rearrangement within each layer.
    started = time.perf_counter()
    head_mask, neuron_mask = searched.head_mask, searched.neuron_mask
    if settings.rearrange:
        head_mask = rearrange_masks(gradients.head, head_mask)
        neuron_mask = rearrange_masks(gradients.neuron, neuron_mask)
    timings["rearrange"] = time.perf_counter() - started

    # Stage 4: layer-wise least-squares tuning of the kept units' scales.
    started = time.perf_counter()
    fits = []
    if settings.tune:
        if settings.teacher == "dense":
            teacher_head, teacher_neuron = torch.ones_like(head_mask), torch.ones_like(neuron_mask)
        else:
            teacher_head, teacher_neuron = teacher.head_mask, teacher.neuron_mask
        options = TuningOptions(
            tune_first_layer_attention=settings.tune_first_layer_attention,
            cls_only_last_ffn=settings.cls_only_last_ffn and task.kind != "question_answering",
            damping=settings.damping,
        )
        tuned = tune_masks(
            model,
            adapter,
            without_labels(calibration, settings.batch_size),
            head_mask,
            neuron_mask,
            teacher_head,
            teacher_neuron,
            options,
        )
        final_head, final_neuron, fits = tuned.head_mask, tuned.neuron_mask, tuned.fits
    else:
        final_head, final_neuron = head_mask, neuron_mask
    timings["tune"] = time.perf_counter() - started

    # Physical pruning, checked against the masked model on padded dev batches.
    started = time.perf_counter()
    sliced = copy.deepcopy(model)
    sliced_adapter = get_adapter(sliced)
    slice_model(sliced_adapter, final_head, final_neuron)
    timings["slice"] = time.perf_counter() - started
    dev = task.dev_set()
    dev_batches = without_labels(dev.select(range(min(len(dev), SANITY_BATCHES * SANITY_BATCH_SIZE))), SANITY_BATCH_SIZE)
    difference = masked_vs_sliced_difference(model, sliced, adapter, final_head, final_neuron, dev_batches)
    logger.info("masked vs sliced model: max abs output difference %.3g", difference)

    kept_heads, kept_neurons = sliced_adapter.kept_counts()
    units = kept_units(final_head, final_neuron)
    with atomic_directory(paths.pruned_model) as staging:
        save_pruned_model(sliced, tokenizer, staging, units)
    masks = {
        "head_importance": head_importance,
        "neuron_importance": neuron_importance,
        "head_mask_search": searched.head_mask,
        "neuron_mask_search": searched.neuron_mask,
        "head_mask_rearranged": head_mask,
        "neuron_mask_rearranged": neuron_mask,
        "head_mask_final": final_head,
        "neuron_mask_final": final_neuron,
        "head_mask_teacher": teacher.head_mask,
        "neuron_mask_teacher": teacher.neuron_mask,
    }
    mask_bytes = save({name: value.contiguous().float() for name, value in masks.items()})
    atomic_write(paths.masks, lambda file: file.write(mask_bytes))

    record = {
        "stage_key": key,
        "constraint": settings.constraint,
        "seq_len": seq_len,
        "seq_len_source": seq_len_source,
        "gradient_mode": settings.gradient_mode,
        "num_calibration_samples": len(calibration),
        "mac_per_head": cost.mac_per_head,
        "mac_per_neuron": cost.mac_per_neuron,
        "dense_encoder_macs": cost.dense_macs(),
        "budget_macs": searched.budget,
        "pruned_encoder_macs": cost.encoder_macs(sum(kept_heads), sum(kept_neurons)),
        "teacher_constraint": math.sqrt(settings.constraint) if settings.teacher == "sqrt_constraint" else 1.0,
        "heads_per_layer": kept_heads,
        "neurons_per_layer": kept_neurons,
        "dense_encoder_parameters": encoder_parameter_count(adapter),
        "pruned_encoder_parameters": encoder_parameter_count(sliced_adapter),
        "stages": {"rearrange": settings.rearrange, "tune": settings.tune},
        "tuning": [fit.__dict__ for fit in fits],
        "time_seconds": timings,
        "sanity": {"masked_vs_sliced_max_abs_diff": difference},
        "dense_model": source,
        "pruned_model": str(paths.pruned_model),
        "provenance": provenance({**model_inputs_hash(source), **task.input_files()}),
    }
    atomic_write_json(paths.prune_record, record)
    logger.info(
        "pruned to %.1f%% of encoder MACs and %.1f%% of encoder parameters in %.0f s",
        100 * record["pruned_encoder_macs"] / record["dense_encoder_macs"],
        100 * record["pruned_encoder_parameters"] / record["dense_encoder_parameters"],
        sum(timings.values()),
    )
    return record

