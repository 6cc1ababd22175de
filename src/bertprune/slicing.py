"""Physical pruning: fold the tuned scales into the weights and slice away the pruned units.

A head's scale multiplies that head's columns of the attention output projection W_o, and a
neuron's scale multiplies its column of W2, so the sliced model computes exactly what the masked
model computes. Then the pruned heads' Q, K and V rows and W_o columns, and the pruned neurons'
W1 rows, b1 entries and W2 columns are removed. A layer left with no heads (or no neurons) keeps
only that sublayer's output bias, LayerNorm(residual + bias). The attention padding mask is
untouched, because slicing changes only the projections' widths.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from bertprune.arch import EncoderAdapter

logger = logging.getLogger(__name__)


def _keep_rows(linear: nn.Linear, index: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.detach()[index].clone())
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach()[index].clone())
    linear.out_features = len(index)


def _keep_columns(linear: nn.Linear, index: torch.Tensor, scale: torch.Tensor) -> None:
    weight = linear.weight.detach()[:, index] * scale.to(linear.weight.dtype)
    linear.weight = nn.Parameter(weight.clone())
    linear.in_features = len(index)


def _head_columns(heads: torch.Tensor, head_size: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_size + torch.arange(head_size)).flatten()


@torch.no_grad()
def slice_model(adapter: EncoderAdapter, head_mask: torch.Tensor, neuron_mask: torch.Tensor) -> None:
    """Prune the model in place: units with a zero mask are removed, the others keep their scale.

    `head_mask` is [L, H] and `neuron_mask` is [L, F], indexing the unsliced model's units.
    """
    shape = adapter.shape()
    for index, layer in enumerate(adapter.layers()):
        parts = adapter.parts(layer)
        unsliced = (
            parts.query is not None
            and parts.ffn_input is not None
            and parts.query.out_features == shape.num_heads * shape.head_size
            and parts.ffn_input.out_features == shape.intermediate_size
        )
        if not unsliced:
            raise ValueError(f"layer {index} is already sliced; slice_model takes an unsliced model")

        kept_heads = torch.nonzero(head_mask[index]).flatten()
        if len(kept_heads) == 0:
            adapter.remove_attention(layer)
        else:
            columns = _head_columns(kept_heads, shape.head_size)
            column_scale = head_mask[index, kept_heads].repeat_interleave(shape.head_size)
            for projection in (parts.query, parts.key, parts.value):
                _keep_rows(projection, columns)
            _keep_columns(parts.attention_output, columns, column_scale)
            adapter.set_num_heads(layer, len(kept_heads))

        kept_neurons = torch.nonzero(neuron_mask[index]).flatten()
        if len(kept_neurons) == 0:
            adapter.remove_ffn(layer)
        else:
            _keep_rows(parts.ffn_input, kept_neurons)
            _keep_columns(parts.ffn_output, kept_neurons, neuron_mask[index, kept_neurons])

    heads, neurons = adapter.kept_counts()
    logger.info("sliced the encoder to %s heads and %s neurons per layer", heads, neurons)


def encoder_parameter_count(adapter: EncoderAdapter) -> int:
    """Count the parameters of the encoder layers (attention, FFN and their LayerNorms)."""
    seen: set[int] = set()
    total = 0
    for layer in adapter.layers():
        for parameter in layer.parameters():
            if id(parameter) not in seen:
                seen.add(id(parameter))
                total += parameter.numel()
    return total
