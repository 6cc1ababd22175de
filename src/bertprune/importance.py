"""Stage 1: mask gradients and Fisher importance.

A mask variable of ones sits on every head and every FFN neuron. With the weights frozen, the
task loss is backpropagated to the masks over the calibration samples. The importance of a unit
is the diagonal of the empirical Fisher information, the sum of its squared mask gradients.

The authors' code takes one gradient per mini-batch and squares that; the paper's definition
squares per-example gradients. Both are offered (`per_batch`, `per_example`); the per-batch
gradient vectors are also what the rearrangement stage builds its block-diagonal Fisher from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal

import torch
from tqdm.auto import tqdm

from bertprune.arch import EncoderAdapter
from bertprune.masking import apply_masks

logger = logging.getLogger(__name__)

GradientMode = Literal["per_batch", "per_example"]


@dataclass
class MaskGradients:
    """Gradient vectors of the loss with respect to the masks, one row per mini-batch or example."""

    head: torch.Tensor  # [G, L, H]
    neuron: torch.Tensor  # [G, L, F]
    mode: GradientMode

    def head_importance(self) -> torch.Tensor:
        return self.head.pow(2).sum(0)

    def neuron_importance(self) -> torch.Tensor:
        return self.neuron.pow(2).sum(0)


def _split_examples(batch: dict[str, torch.Tensor]) -> Iterable[dict[str, torch.Tensor]]:
    size = next(iter(batch.values())).shape[0]
    for index in range(size):
        yield {name: value[index : index + 1] for name, value in batch.items()}


def collect_mask_gradients(
    model: torch.nn.Module,
    adapter: EncoderAdapter,
    batches: Iterable[dict[str, torch.Tensor]],
    mode: GradientMode = "per_batch",
    num_batches: int | None = None,
) -> MaskGradients:
    """Return the mask gradients of the task loss over the calibration batches.

    Each batch contains the model inputs and the labels that make a Hugging Face model return its
    task loss (`labels`, or `start_positions` and `end_positions` for question answering).
    """
    if mode not in ("per_batch", "per_example"):
        raise ValueError(f"gradient mode must be 'per_batch' or 'per_example', got {mode!r}")
    shape = adapter.shape()
    head_mask = torch.ones(shape.num_layers, shape.num_heads, requires_grad=True)
    neuron_mask = torch.ones(shape.num_layers, shape.intermediate_size, requires_grad=True)

    was_training = model.training
    model.eval()
    requires_grad = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)

    head_gradients, neuron_gradients = [], []
    try:
        with apply_masks(adapter, head_mask, neuron_mask):
            for batch in tqdm(batches, total=num_batches, desc="mask gradients", unit="batch"):
                pieces = [batch] if mode == "per_batch" else _split_examples(batch)
                for piece in pieces:
                    loss = model(**piece).loss
                    head_grad, neuron_grad = torch.autograd.grad(loss, (head_mask, neuron_mask))
                    head_gradients.append(head_grad.detach())
                    neuron_gradients.append(neuron_grad.detach())
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(requires_grad[name])
        model.train(was_training)

    if not head_gradients:
        raise ValueError("no calibration batches were given, so no mask gradients could be computed")
    gradients = MaskGradients(torch.stack(head_gradients), torch.stack(neuron_gradients), mode)
    logger.info("collected %d %s mask gradient vectors", len(head_gradients), mode.replace("_", "-"))
    return gradients
