"""Stage 3: mask rearrangement with a block-diagonal Fisher approximation.

The search fixes how many heads and neurons each layer prunes. Within a layer, the loss increase
of pruning the set P is approximated by (1 − m)ᵀ F_l (1 − m), with F_l = G Gᵀ built from the
gradient vectors g_b of that layer's units; that equals sum_b (sum_{i in P} g_b,i)². A greedy
pass chooses *which* units to prune: start from the units with the smallest diagonal importance;
then, for each remaining unit in ascending importance, add it to P and drop the member of P
whose removal gives the smallest objective (possibly the unit just added). The per-layer counts,
and so the MACs, never change, and the objective never increases.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def pruning_objective(gradients: torch.Tensor, pruned: torch.Tensor) -> float:
    """Return sum_b (sum_{i in pruned} g_b,i)² for gradients [G, n] and a boolean mask [n]."""
    return gradients[:, pruned].sum(1).double().pow(2).sum().item()


def rearrange_layer(gradients: torch.Tensor, keep_mask: torch.Tensor) -> torch.Tensor:
    """Return a binary keep mask [n] with the same count as `keep_mask`, greedily re-chosen.

    `gradients` is [G, n]: one gradient vector per mini-batch (or example) for this layer's units.
    """
    num_units = keep_mask.numel()
    num_pruned = int((keep_mask == 0).sum().item())
    if num_pruned in (0, num_units):
        return keep_mask.clone()

    g = gradients.double().T.contiguous()  # [n, G]: one row per unit
    squared_norms = g.pow(2).sum(1)
    order = torch.argsort(squared_norms)  # ascending diagonal importance

    pruned = torch.zeros(num_units, dtype=torch.bool)
    pruned[order[:num_pruned]] = True
    pruned_sum = g[pruned].sum(0)  # sum of the pruned units' gradient vectors, [G]

    for unit in order[num_pruned:].tolist():
        pruned[unit] = True
        candidate_sum = pruned_sum + g[unit]
        # Objective after dropping member i from P: ||s - g_i||² = ||s||² - 2 s·g_i + ||g_i||².
        objective = candidate_sum.pow(2).sum() - 2 * (g @ candidate_sum) + squared_norms
        objective[~pruned] = float("inf")
        dropped = int(torch.argmin(objective).item())
        pruned[dropped] = False
        pruned_sum = candidate_sum - g[dropped]

    return (~pruned).to(keep_mask.dtype)


def rearrange_masks(gradients: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rearrange a [L, n] binary mask layer by layer, given gradient vectors [G, L, n]."""
    rearranged = torch.stack([rearrange_layer(gradients[:, layer], mask[layer]) for layer in range(mask.shape[0])])
    before = sum(pruning_objective(gradients[:, layer], mask[layer] == 0) for layer in range(mask.shape[0]))
    after = sum(pruning_objective(gradients[:, layer], rearranged[layer] == 0) for layer in range(mask.shape[0]))
    changed = int((rearranged != mask).sum().item()) // 2
    logger.info("rearrangement swapped %d units; Fisher objective %.4g -> %.4g", changed, before, after)
    return rearranged
