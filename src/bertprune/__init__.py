"""Post-training structured pruning of BERT-family models (Kwon et al., NeurIPS 2022).

The stages run in the order of the paper: mask gradients and Fisher importance
(`importance`), the search under a MAC budget (`search`, with the cost model in `cost`),
per-layer mask rearrangement (`rearrange`), layer-wise least-squares mask tuning
(`tuning`), and physical slicing into a smaller model (`slicing`).
"""

__version__ = "0.1.0"
