"""Fine-tuning a pretrained encoder on the task, for experiments that start without a task model.

The recipe is the usual Hugging Face one: AdamW with weight decay on all weights except biases
and LayerNorm, a linear learning-rate schedule with warmup, dropout on, seeded shuffling. A
checkpoint (weights, optimizer and scheduler state, step) is written atomically every
`checkpoint_every_steps` steps, and a rerun resumes from the last one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model as load_safetensors_weights
from safetensors.torch import save_model as save_safetensors_weights
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bertprune.config import ExperimentConfig
from bertprune.provenance import atomic_directory, atomic_write_json
from bertprune.tasks import EncodedSet

logger = logging.getLogger(__name__)

CHECKPOINT_WEIGHTS = "model.safetensors"
CHECKPOINT_STATE = "trainer_state.pt"
CHECKPOINT_INFO = "checkpoint.json"


def _optimizer(model: torch.nn.Module, config: ExperimentConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.finetune.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.finetune.learning_rate)


def _save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, total_steps: int) -> None:
    with atomic_directory(folder) as staging:
        save_safetensors_weights(model, str(staging / CHECKPOINT_WEIGHTS))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / CHECKPOINT_STATE)
        atomic_write_json(staging / CHECKPOINT_INFO, {"step": step, "total_steps": total_steps})


def _load_checkpoint(folder: Path, model, optimizer, scheduler, total_steps: int) -> int:
    """Restore a checkpoint and return its step, or 0 when there is none or it does not fit this run."""
    info_path = folder / CHECKPOINT_INFO
    if not info_path.is_file():
        return 0
    info = json.loads(info_path.read_text())
    if info.get("total_steps") != total_steps:
        logger.warning("ignoring checkpoint %s: it was made for %s steps, this run has %d", folder, info.get("total_steps"), total_steps)
        return 0
    load_safetensors_weights(model, str(folder / CHECKPOINT_WEIGHTS), strict=True)
    state = torch.load(folder / CHECKPOINT_STATE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    logger.info("resuming fine-tuning from step %d of %d (%s)", info["step"], total_steps, folder)
    return int(info["step"])


def finetune(model: torch.nn.Module, train: EncodedSet, config: ExperimentConfig, checkpoint_dir: Path) -> dict:
    """Fine-tune the model in place and return a summary (steps, final loss, time)."""
    settings = config.finetune
    if settings.max_train_examples is not None and settings.max_train_examples < len(train):
        # A seeded random subset: data files are often sorted by label, so a prefix could hold one class.
        subset = np.random.default_rng(config.seed).permutation(len(train))[: settings.max_train_examples]
        train = train.select(np.sort(subset).tolist())
    steps_per_epoch = train.num_batches(settings.batch_size)
    total_steps = max(1, math.ceil(settings.epochs * steps_per_epoch))

    torch.manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    step = _load_checkpoint(checkpoint_dir, model, optimizer, scheduler, total_steps)

    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    progress = tqdm(total=total_steps, initial=step, desc="fine-tune", unit="step")
    epoch = step // steps_per_epoch
    while step < total_steps:
        # Each epoch's order depends only on the seed and the epoch, so a resumed run gets the same batches.
        batches = train.batches(settings.batch_size, with_labels=True, shuffle=True, seed=config.seed + epoch)
        for index, batch in enumerate(batches):
            if epoch * steps_per_epoch + index < step:
                continue
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.4f}")
            if step % settings.checkpoint_every_steps == 0 and step < total_steps:
                _save_checkpoint(checkpoint_dir, model, optimizer, scheduler, step, total_steps)
            if step >= total_steps:
                break
        epoch += 1
    progress.close()
    model.eval()

    elapsed = time.perf_counter() - started
    tail = losses[-20:]
    summary = {
        "steps": total_steps,
        "train_examples": len(train),
        "final_loss_mean_last_20_steps": sum(tail) / len(tail) if tail else None,
        "seconds_this_run": elapsed,
    }
    logger.info("fine-tuned for %d steps in %.0f s", total_steps, elapsed)
    return summary
