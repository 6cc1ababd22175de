"""The MAC cost model of the encoder, which the search budgets against.

Only the encoder is counted: embeddings, LayerNorms, biases, the pooler and the classifier are
excluded. For sequence length s, hidden size d and head size d_h, one attention head costs
4·s·d·d_h (its Q, K, V and output-projection slices) plus 2·s²·d_h (the two attention
matmuls), and one FFN neuron costs 2·s·d (its row of W1 and column of W2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bertprune.arch import EncoderShape


@dataclass(frozen=True)
class MacCostModel:
    """MACs of one head and one neuron at a fixed sequence length."""

    seq_len: float
    mac_per_head: float
    mac_per_neuron: float
    shape: EncoderShape

    @classmethod
    def for_shape(cls, shape: EncoderShape, seq_len: float) -> MacCostModel:
        if seq_len <= 0:
            raise ValueError(f"sequence length for the MAC model must be positive, got {seq_len}")
        s, d, d_h = seq_len, shape.hidden_size, shape.head_size
        return cls(
            seq_len=seq_len,
            mac_per_head=4 * s * d * d_h + 2 * s * s * d_h,
            mac_per_neuron=2 * s * d,
            shape=shape,
        )

    def encoder_macs(self, num_heads: int, num_neurons: int) -> float:
        """Return the encoder MACs of a model that keeps this many heads and neurons in total."""
        return num_heads * self.mac_per_head + num_neurons * self.mac_per_neuron

    def dense_macs(self) -> float:
        shape = self.shape
        return self.encoder_macs(shape.num_layers * shape.num_heads, shape.num_layers * shape.intermediate_size)

    def budget(self, constraint: float) -> float:
        """Return the MACs that a constraint (fraction of dense encoder MACs kept) allows."""
        return constraint * self.dense_macs()


def average_token_length(lengths: Iterable[int]) -> float:
    """Return the mean number of non-padding tokens, the sequence length the cost model uses."""
    values = list(lengths)
    if not values:
        raise ValueError("cannot compute the average token length of an empty dataset")
    return sum(values) / len(values)

