"""Head and neuron masks applied through forward pre-hooks.

A head mask multiplies that head's attention probabilities. Because the attention output is
linear in the probabilities, this equals scaling that head's slice of the input of the output
projection W_o, so a pre-hook on W_o masks heads for any attention kernel (eager or SDPA). A
neuron mask multiplies the post-activation output of an FFN neuron, which is the input of W2.
Transformers 5 removed `head_mask`, so these hooks are the only masking mechanism.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from bertprune.arch import EncoderAdapter


def _scale_heads(head_scale: torch.Tensor, head_size: int):
    def hook(module, args):
        (context,) = args
        shape = context.shape
        heads = context.view(*shape[:-1], -1, head_size) * head_scale.to(context.dtype).unsqueeze(-1)
        return (heads.view(shape),)

    return hook


def _scale_neurons(neuron_scale: torch.Tensor):
    def hook(module, args):
        (activations,) = args
        return (activations * neuron_scale.to(activations.dtype),)

    return hook


@contextmanager
def apply_masks(
    adapter: EncoderAdapter,
    head_mask: torch.Tensor | None,
    neuron_mask: torch.Tensor | None,
) -> Iterator[None]:
    """Apply head masks `[L, H]` and neuron masks `[L, F]` to the model while the context is open.

    The masks may be binary or real-valued (tuned scales) and may require gradients, which is how
    the importance stage differentiates the loss with respect to them. None leaves that kind of
    unit unmasked. The model must be unsliced: masks index the original heads and neurons.
    """
    check_mask_shapes(adapter, head_mask, neuron_mask)
    shape = adapter.shape()
    handles = []
    try:
        for index, layer in enumerate(adapter.layers()):
            parts = adapter.parts(layer)
            if head_mask is not None:
                hook = _scale_heads(head_mask[index], shape.head_size)
                handles.append(parts.attention_output.register_forward_pre_hook(hook))
            if neuron_mask is not None:
                hook = _scale_neurons(neuron_mask[index])
                handles.append(parts.ffn_output.register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_mask_shapes(adapter: EncoderAdapter, head_mask: torch.Tensor | None, neuron_mask: torch.Tensor | None) -> None:
    """Raise ValueError when the masks do not match the encoder's layers, heads and neurons."""
    shape = adapter.shape()
    expected_heads = (shape.num_layers, shape.num_heads)
    expected_neurons = (shape.num_layers, shape.intermediate_size)
    if head_mask is not None and tuple(head_mask.shape) != expected_heads:
        raise ValueError(f"head mask has shape {tuple(head_mask.shape)}, the model needs {expected_heads}")
    if neuron_mask is not None and tuple(neuron_mask.shape) != expected_neurons:
        raise ValueError(f"neuron mask has shape {tuple(neuron_mask.shape)}, the model needs {expected_neurons}")
