"""Mask search: the best binary head and neuron masks under a MAC budget.

Heads are ranked globally by importance, and so are neurons. All heads cost the same and all
neurons cost the same, so for every head count h the best choice keeps the top-h heads and as
many top neurons as the remaining budget pays for. Enumerating h therefore solves this knapsack
exactly. At least one head is kept.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from bertprune.cost import MacCostModel

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    head_mask: torch.Tensor  # [L, H], 0 or 1
    neuron_mask: torch.Tensor  # [L, F], 0 or 1
    kept_heads: int
    kept_neurons: int
    kept_macs: float
    budget: float


def search_masks(
    head_importance: torch.Tensor,
    neuron_importance: torch.Tensor,
    cost: MacCostModel,
    constraint: float,
) -> SearchResult:
    """Return the binary masks that maximise the kept importance within `constraint` of the MACs."""
    if not 0 < constraint <= 1:
        raise ValueError(f"constraint must be in (0, 1], got {constraint}")
    budget = cost.budget(constraint)

    head_order = torch.argsort(head_importance.flatten(), descending=True)
    neuron_order = torch.argsort(neuron_importance.flatten(), descending=True)
    head_cumulative = torch.cumsum(head_importance.flatten()[head_order].double(), 0)
    neuron_cumulative = torch.cumsum(neuron_importance.flatten()[neuron_order].double(), 0)
    total_neurons = neuron_order.numel()

    best_score, best_heads, best_neurons = -math.inf, 1, 0
    for heads in range(1, head_order.numel() + 1):
        remaining = budget - heads * cost.mac_per_head
        if remaining < 0:
            break
        neurons = min(int(math.floor(remaining / cost.mac_per_neuron)), total_neurons)
        score = head_cumulative[heads - 1].item()
        if neurons > 0:
            score += neuron_cumulative[neurons - 1].item()
        if score > best_score:
            best_score, best_heads, best_neurons = score, heads, neurons

    if best_score == -math.inf:
        logger.warning("the budget of %.4g MACs does not pay for one head; keeping one head and no neurons", budget)

    head_mask = torch.zeros(head_importance.numel())
    head_mask[head_order[:best_heads]] = 1.0
    neuron_mask = torch.zeros(neuron_importance.numel())
    neuron_mask[neuron_order[:best_neurons]] = 1.0
    kept_macs = cost.encoder_macs(best_heads, best_neurons)
    logger.info(
        "search at constraint %.3f: kept %d/%d heads and %d/%d neurons, %.1f%% of dense MACs",
        constraint,
        best_heads,
        head_order.numel(),
        best_neurons,
        total_neurons,
        100 * kept_macs / cost.dense_macs(),
    )
    return SearchResult(
        head_mask=head_mask.view_as(head_importance),
        neuron_mask=neuron_mask.view_as(neuron_importance),
        kept_heads=best_heads,
        kept_neurons=best_neurons,
        kept_macs=kept_macs,
        budget=budget,
    )
