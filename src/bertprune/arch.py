"""Architecture adapters: where the heads and FFN neurons of each encoder family live.

Every stage of the method reaches the model through an adapter, so supporting another post-LN
encoder with multi-head attention and a two-layer FFN means adding one class here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderShape:
    """Sizes of an encoder: layers, heads per layer, head size, hidden size and FFN neurons per layer."""

    num_layers: int
    num_heads: int
    head_size: int
    hidden_size: int
    intermediate_size: int


@dataclass
class LayerParts:
    """The modules of one encoder layer that masking, tuning and slicing touch."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear  # W_o: input is the concatenated head contexts
    attention_norm: nn.LayerNorm  # applied to attention output + residual
    ffn_input: nn.Linear  # W1
    ffn_output: nn.Linear  # W2: input is the post-activation neurons
    ffn_norm: nn.LayerNorm  # applied to FFN output + residual


class AttentionPassThrough(nn.Module):
    """An attention sublayer with every head pruned: only the output projection's bias remains.

    With `norm` (BERT) it returns LayerNorm(residual + bias), as BertAttention does. Without it
    (DistilBERT) it returns the bias alone, because the DistilBERT block adds the residual and normalises.
    """

    def __init__(self, bias: torch.Tensor, norm: nn.LayerNorm | None):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())
        self.norm = norm

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.norm is None:
            return self.bias.expand_as(hidden_states), None
        return self.norm(hidden_states + self.bias), None


class FeedForwardPassThrough(nn.Module):
    """A BERT FFN output block with every neuron pruned: LayerNorm(residual + bias of W2)."""

    def __init__(self, bias: torch.Tensor, norm: nn.LayerNorm):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())
        self.LayerNorm = norm

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(input_tensor + self.bias)


class BiasOnly(nn.Module):
    """A DistilBERT FFN with every neuron pruned: it outputs the bias of W2 at every position."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bias.expand_as(hidden_states)


class EncoderAdapter:
    """Access to the encoder layers of one model family; subclasses name the modules."""

    model_types: tuple[str, ...] = ()

    def __init__(self, model: nn.Module):
        self.model = model

    def base_model(self) -> nn.Module:
        return getattr(self.model, self.model.base_model_prefix)

    def layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def parts(self, layer: nn.Module) -> LayerParts:
        raise NotImplementedError

    def shape(self) -> EncoderShape:
        raise NotImplementedError

    def set_num_heads(self, layer: nn.Module, num_heads: int) -> None:
        raise NotImplementedError

    def remove_attention(self, layer: nn.Module) -> None:
        raise NotImplementedError

    def remove_ffn(self, layer: nn.Module) -> None:
        raise NotImplementedError

    def has_attention(self, layer: nn.Module) -> bool:
        raise NotImplementedError

    def has_ffn(self, layer: nn.Module) -> bool:
        raise NotImplementedError

    def kept_counts(self) -> tuple[list[int], list[int]]:
        """Return the heads and FFN neurons that each layer has now (0 for a removed sublayer)."""
        head_size = self.shape().head_size
        heads, neurons = [], []
        for layer in self.layers():
            if self.has_attention(layer):
                heads.append(self.parts(layer).query.out_features // head_size)
            else:
                heads.append(0)
            neurons.append(self.parts(layer).ffn_input.out_features if self.has_ffn(layer) else 0)
        return heads, neurons


class BertAdapter(EncoderAdapter):
    """BERT and the models that share its layer code: BERT-base/large, MiniLM and RoBERTa."""

    model_types = ("bert", "roberta")

    def layers(self) -> list[nn.Module]:
        return list(self.base_model().encoder.layer)

    def shape(self) -> EncoderShape:
        config = self.model.config
        return EncoderShape(
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            head_size=config.hidden_size // config.num_attention_heads,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
        )

    def parts(self, layer: nn.Module) -> LayerParts:
        attention = layer.attention
        if isinstance(attention, AttentionPassThrough):
            query = key = value = attention_output = None
            attention_norm = attention.norm
        else:
            query, key, value = attention.self.query, attention.self.key, attention.self.value
            attention_output, attention_norm = attention.output.dense, attention.output.LayerNorm
        if isinstance(layer.output, FeedForwardPassThrough):
            ffn_input = ffn_output = None
        else:
            ffn_input, ffn_output = layer.intermediate.dense, layer.output.dense
        return LayerParts(
            query=query,
            key=key,
            value=value,
            attention_output=attention_output,
            attention_norm=attention_norm,
            ffn_input=ffn_input,
            ffn_output=ffn_output,
            ffn_norm=layer.output.LayerNorm,
        )

    def set_num_heads(self, layer: nn.Module, num_heads: int) -> None:
        attention = layer.attention.self
        attention.num_attention_heads = num_heads
        attention.all_head_size = num_heads * attention.attention_head_size

    def remove_attention(self, layer: nn.Module) -> None:
        output = layer.attention.output
        layer.attention = AttentionPassThrough(output.dense.bias, output.LayerNorm)

    def remove_ffn(self, layer: nn.Module) -> None:
        layer.intermediate = nn.Identity()
        layer.output = FeedForwardPassThrough(layer.output.dense.bias, layer.output.LayerNorm)

    def has_attention(self, layer: nn.Module) -> bool:
        return not isinstance(layer.attention, AttentionPassThrough)

    def has_ffn(self, layer: nn.Module) -> bool:
        return not isinstance(layer.output, FeedForwardPassThrough)


class DistilBertAdapter(EncoderAdapter):
    """DistilBERT: the block applies both LayerNorms itself, so a removed sublayer outputs its bias."""

    model_types = ("distilbert",)

    def layers(self) -> list[nn.Module]:
        return list(self.base_model().transformer.layer)

    def shape(self) -> EncoderShape:
        config = self.model.config
        return EncoderShape(
            num_layers=config.n_layers,
            num_heads=config.n_heads,
            head_size=config.dim // config.n_heads,
            hidden_size=config.dim,
            intermediate_size=config.hidden_dim,
        )

    def parts(self, layer: nn.Module) -> LayerParts:
        attention = layer.attention
        has_attention = not isinstance(attention, AttentionPassThrough)
        has_ffn = not isinstance(layer.ffn, BiasOnly)
        return LayerParts(
            query=attention.q_lin if has_attention else None,
            key=attention.k_lin if has_attention else None,
            value=attention.v_lin if has_attention else None,
            attention_output=attention.out_lin if has_attention else None,
            attention_norm=layer.sa_layer_norm,
            ffn_input=layer.ffn.lin1 if has_ffn else None,
            ffn_output=layer.ffn.lin2 if has_ffn else None,
            ffn_norm=layer.output_layer_norm,
        )

    def set_num_heads(self, layer: nn.Module, num_heads: int) -> None:
        layer.attention.n_heads = num_heads

    def remove_attention(self, layer: nn.Module) -> None:
        layer.attention = AttentionPassThrough(layer.attention.out_lin.bias, norm=None)

    def remove_ffn(self, layer: nn.Module) -> None:
        layer.ffn = BiasOnly(layer.ffn.lin2.bias)

    def has_attention(self, layer: nn.Module) -> bool:
        return not isinstance(layer.attention, AttentionPassThrough)

    def has_ffn(self, layer: nn.Module) -> bool:
        return not isinstance(layer.ffn, BiasOnly)


ADAPTERS: tuple[type[EncoderAdapter], ...] = (BertAdapter, DistilBertAdapter)
SUPPORTED_MODEL_TYPES = tuple(model_type for adapter in ADAPTERS for model_type in adapter.model_types)


def get_adapter(model: nn.Module) -> EncoderAdapter:
    """Return the adapter for a Hugging Face model, or raise ValueError naming the supported types."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter(model)
    raise ValueError(
        f"unsupported architecture {model_type!r}: bertprune supports model_type "
        f"{', '.join(SUPPORTED_MODEL_TYPES)}; add an adapter in bertprune/arch.py for another encoder"
    )
