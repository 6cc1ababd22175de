"""Stage 4: mask tuning by layer-wise least squares.

The binary masks become real-valued per-unit scales, fitted one layer at a time (layer 0 first)
so that the pruned layer reproduces a teacher's sublayer outputs before LayerNorm: attention
output projection plus residual, then FFN output plus residual. Padding tokens are left out.

For the attention sublayer, column h of the system is head h's contribution ctx_h · W_o[:, h]ᵀ;
for the FFN, column j is neuron j's activation times its column of W2. With δ = scale − 1, the
student's pre-LayerNorm output is S + A δ, so the stage solves the normal equations
AᵀA δ = Aᵀ(T − S) with SciPy's LSMR and damping 1, which pulls the scales towards 1.

The authors' choices are switches: a teacher with the binary mask found at sqrt(constraint)
(chosen by the caller), attention left untuned in layer 0, and the last layer's FFN matched on
the [CLS] token alone for classification. Where their code silently stopped tuning every later
layer after a solver failure or a scale outside [-10, 10], this stage logs the sublayer, keeps
its binary mask and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy.sparse.linalg import lsmr
from tqdm.auto import tqdm

from bertprune.arch import EncoderAdapter
from bertprune.masking import apply_masks

logger = logging.getLogger(__name__)


@dataclass
class TuningOptions:
    tune_first_layer_attention: bool = False
    cls_only_last_ffn: bool = True
    damping: float = 1.0
    # CuPy's lsmr runs at most 5·min(m, n) iterations; SciPy's default of min(m, n) stops small
    # systems at the limit, which then count as failures.
    max_iterations_factor: int = 5
    scale_bound: float = 10.0


@dataclass
class SublayerFit:
    """Outcome of one sublayer's least-squares fit; `applied` is False when its binary mask was kept."""

    layer: int
    sublayer: str  # "attention" or "ffn"
    units: int
    applied: bool
    reason: str
    istop: int | None = None
    iterations: int | None = None
    min_scale: float | None = None
    max_scale: float | None = None
    error_before: float | None = None
    error_after: float | None = None


@dataclass
class TuningResult:
    head_mask: torch.Tensor  # [L, H] real-valued scales, 0 for pruned heads
    neuron_mask: torch.Tensor  # [L, F]
    fits: list[SublayerFit] = field(default_factory=list)


@dataclass
class _LayerInput:
    hidden_states: torch.Tensor
    extra_args: tuple
    kwargs: dict
    token_mask: torch.Tensor  # [B, T] bool, True for real tokens


class _StopForward(Exception):
    pass


def capture_encoder_inputs(model: torch.nn.Module, adapter: EncoderAdapter, batches) -> list[_LayerInput]:
    """Run the embeddings on every batch and return the inputs that the first encoder layer receives."""
    captured: list[_LayerInput] = []
    current_mask: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        captured.append(_LayerInput(args[0].detach(), tuple(args[1:]), dict(kwargs), current_mask[0]))
        raise _StopForward

    handle = adapter.layers()[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                current_mask[:] = [batch["attention_mask"].bool()]
                inputs = {name: value for name, value in batch.items() if name in _MODEL_INPUTS}
                try:
                    model(**inputs)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return captured


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _run_layer(layer: torch.nn.Module, layer_input: _LayerInput, hidden_states: torch.Tensor) -> torch.Tensor:
    output = layer(hidden_states, *layer_input.extra_args, **layer_input.kwargs)
    return output[0] if isinstance(output, tuple) else output


class _Capture:
    """Records the first positional input of a module on each call."""

    def __init__(self, module: torch.nn.Module):
        self.values: list[torch.Tensor] = []
        self.handle = module.register_forward_pre_hook(self._record)

    def _record(self, module, args):
        self.values.append(args[0].detach())

    def pop(self) -> torch.Tensor:
        return self.values.pop()

    def remove(self) -> None:
        self.handle.remove()


def _select_tokens(values: torch.Tensor, token_mask: torch.Tensor, cls_only: bool) -> torch.Tensor:
    if cls_only:
        return values[:, 0]
    return values[token_mask]


def _solve(ata: np.ndarray, atb: np.ndarray, options: TuningOptions) -> tuple[np.ndarray, int, int]:
    max_iterations = options.max_iterations_factor * min(ata.shape)
    delta, istop, iterations = lsmr(ata, atb, damp=options.damping, maxiter=max_iterations)[:3]
    return delta, int(istop), int(iterations)


def _fit(
    layer: int,
    sublayer: str,
    ata: np.ndarray,
    atb: np.ndarray,
    residual_norm: float,
    options: TuningOptions,
) -> tuple[np.ndarray | None, SublayerFit]:
    """Solve one sublayer's normal equations and apply the guard; return the scales or None."""
    delta, istop, iterations = _solve(ata, atb, options)
    scales = 1.0 + delta
    error_after = residual_norm - 2 * float(atb @ delta) + float(delta @ ata @ delta)
    fit = SublayerFit(
        layer=layer,
        sublayer=sublayer,
        units=len(delta),
        applied=False,
        reason="",
        istop=istop,
        iterations=iterations,
        min_scale=float(scales.min()),
        max_scale=float(scales.max()),
        error_before=residual_norm,
        error_after=error_after,
    )
    if istop >= 3:
        fit.reason = f"LSMR did not converge (istop={istop} after {iterations} iterations)"
    elif not np.all(np.isfinite(scales)):
        fit.reason = "LSMR returned non-finite scales"
    elif np.abs(scales).max() > options.scale_bound:
        fit.reason = f"a scale left [-{options.scale_bound:g}, {options.scale_bound:g}]"
    else:
        fit.applied = True
        fit.reason = "tuned"
        return scales, fit
    logger.warning("layer %d %s: %s; keeping its binary mask", layer, sublayer, fit.reason)
    return None, fit


def tune_masks(
    model: torch.nn.Module,
    adapter: EncoderAdapter,
    batches: Sequence[dict[str, torch.Tensor]],
    head_mask: torch.Tensor,
    neuron_mask: torch.Tensor,
    teacher_head_mask: torch.Tensor,
    teacher_neuron_mask: torch.Tensor,
    options: TuningOptions | None = None,
) -> TuningResult:
    """Fit per-unit scales for the kept heads and neurons, layer by layer, against the teacher."""
    options = options or TuningOptions()
    model.eval()
    head_scale = head_mask.clone().float()
    neuron_scale = neuron_mask.clone().float()
    shape = adapter.shape()
    fits: list[SublayerFit] = []

    layer_inputs = capture_encoder_inputs(model, adapter, batches)
    teacher_states = [item.hidden_states for item in layer_inputs]
    student_states = list(teacher_states)

    layers = adapter.layers()
    for index in tqdm(range(len(layers)), desc="mask tuning", unit="layer"):
        layer, parts = layers[index], adapter.parts(layers[index])
        kept_heads = torch.nonzero(head_mask[index]).flatten()
        kept_neurons = torch.nonzero(neuron_mask[index]).flatten()
        last_layer = index == len(layers) - 1

        # The teacher's sublayer outputs before LayerNorm, and its input to the next layer.
        attention_targets, ffn_targets, teacher_next = [], [], []
        attention_norm_in, ffn_norm_in = _Capture(parts.attention_norm), _Capture(parts.ffn_norm)
        try:
            with torch.no_grad(), apply_masks(adapter, teacher_head_mask, teacher_neuron_mask):
                for item, hidden in zip(layer_inputs, teacher_states):
                    teacher_next.append(_run_layer(layer, item, hidden))
                    attention_targets.append(attention_norm_in.pop())
                    ffn_targets.append(ffn_norm_in.pop())
        finally:
            attention_norm_in.remove()
            ffn_norm_in.remove()

        # Attention: columns are the kept heads' contributions to the output projection.
        if len(kept_heads) and (index > 0 or options.tune_first_layer_attention):
            ata = np.zeros((len(kept_heads), len(kept_heads)))
            atb = np.zeros(len(kept_heads))
            residual_norm = 0.0
            context_in, norm_in = _Capture(parts.attention_output), _Capture(parts.attention_norm)
            try:
                with torch.no_grad(), apply_masks(adapter, head_scale, neuron_scale):
                    for item, hidden, target in zip(layer_inputs, student_states, attention_targets):
                        _run_layer(layer, item, hidden)
                        context = _select_tokens(context_in.pop(), item.token_mask, cls_only=False)
                        residual = _select_tokens(target - norm_in.pop(), item.token_mask, cls_only=False)
                        heads = context.view(context.shape[0], shape.num_heads, shape.head_size)[:, kept_heads]
                        weight = parts.attention_output.weight.detach().view(shape.hidden_size, shape.num_heads, shape.head_size)
                        contributions = torch.einsum("nhk,dhk->nhd", heads, weight[:, kept_heads])
                        ata += torch.einsum("nhd,ngd->hg", contributions, contributions).double().numpy()
                        atb += torch.einsum("nhd,nd->h", contributions, residual).double().numpy()
                        residual_norm += residual.double().pow(2).sum().item()
            finally:
                context_in.remove()
                norm_in.remove()
            scales, fit = _fit(index, "attention", ata, atb, residual_norm, options)
            fits.append(fit)
            if scales is not None:
                head_scale[index, kept_heads] = torch.from_numpy(scales).float()
        elif len(kept_heads):
            fits.append(SublayerFit(index, "attention", len(kept_heads), False, "attention of layer 0 is not tuned"))

        # FFN: columns are the kept neurons' activations times their columns of W2.
        if len(kept_neurons):
            cls_only = options.cls_only_last_ffn and last_layer
            ata = np.zeros((len(kept_neurons), len(kept_neurons)))
            atb = np.zeros(len(kept_neurons))
            residual_norm = 0.0
            weight = parts.ffn_output.weight.detach()[:, kept_neurons].double()  # [d, n]
            weight_gram = (weight.T @ weight).numpy()
            activations_in, norm_in = _Capture(parts.ffn_output), _Capture(parts.ffn_norm)
            try:
                with torch.no_grad(), apply_masks(adapter, head_scale, neuron_scale):
                    for item, hidden, target in zip(layer_inputs, student_states, ffn_targets):
                        _run_layer(layer, item, hidden)
                        activations = _select_tokens(activations_in.pop(), item.token_mask, cls_only)
                        residual = _select_tokens(target - norm_in.pop(), item.token_mask, cls_only)
                        activations = activations[:, kept_neurons].double()
                        ata += (activations.T @ activations).numpy() * weight_gram
                        atb += (activations * (residual.double() @ weight)).sum(0).numpy()
                        residual_norm += residual.double().pow(2).sum().item()
            finally:
                activations_in.remove()
                norm_in.remove()
            scales, fit = _fit(index, "ffn", ata, atb, residual_norm, options)
            fits.append(fit)
            if scales is not None:
                neuron_scale[index, kept_neurons] = torch.from_numpy(scales).float()

        # The tuned student's input to the next layer.
        with torch.no_grad(), apply_masks(adapter, head_scale, neuron_scale):
            student_states = [_run_layer(layer, item, hidden) for item, hidden in zip(layer_inputs, student_states)]
        teacher_states = teacher_next

    applied = sum(fit.applied for fit in fits)
    logger.info("mask tuning applied %d of %d sublayer fits", applied, len(fits))
    return TuningResult(head_mask=head_scale, neuron_mask=neuron_scale, fits=fits)
