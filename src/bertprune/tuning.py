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


def _head_terms(weight: torch.Tensor, kept_heads: torch.Tensor, shape):
    """Return a function of (head contexts [n, H·d_h], residuals [n, d]) giving AᵀA and AᵀB for the kept heads."""
    heads_weight = weight.detach().view(shape.hidden_size, shape.num_heads, shape.head_size)[:, kept_heads]

    def terms(context: torch.Tensor, residual: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        heads = context.view(context.shape[0], shape.num_heads, shape.head_size)[:, kept_heads]
        contributions = torch.einsum("nhk,dhk->nhd", heads, heads_weight)
        ata = torch.einsum("nhd,ngd->hg", contributions, contributions).double().numpy()
        atb = torch.einsum("nhd,nd->h", contributions, residual).double().numpy()
        return ata, atb

    return terms


def _neuron_terms(weight: torch.Tensor, kept_neurons: torch.Tensor):
    """Return a function of (activations [n, F], residuals [n, d]) giving AᵀA and AᵀB for the kept neurons."""
    kept_weight = weight.detach()[:, kept_neurons].double()  # [d, n]
    weight_gram = (kept_weight.T @ kept_weight).numpy()

    def terms(activations: torch.Tensor, residual: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        kept = activations[:, kept_neurons].double()
        ata = (kept.T @ kept).numpy() * weight_gram
        atb = (kept * (residual.double() @ kept_weight)).sum(0).numpy()
        return ata, atb

    return terms


def _normal_equations(
    layer, layer_inputs, student_states, targets, unit_input_module, norm_module, student, terms, cls_only
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run the student layer over every batch and sum AᵀA, AᵀB and |B|² for one sublayer.

    The units' inputs are captured before the mask hook scales them, and B is the teacher's
    pre-LayerNorm output minus the student's.
    """
    adapter, head_scale, neuron_scale = student
    ata, atb, residual_norm = 0.0, 0.0, 0.0
    unit_inputs, norm_inputs = _Capture(unit_input_module), _Capture(norm_module)
    try:
        with torch.no_grad(), apply_masks(adapter, head_scale, neuron_scale):
            for item, hidden, target in zip(layer_inputs, student_states, targets):
                _run_layer(layer, item, hidden)
                inputs = _select_tokens(unit_inputs.pop(), item.token_mask, cls_only)
                residual = _select_tokens(target - norm_inputs.pop(), item.token_mask, cls_only)
                batch_ata, batch_atb = terms(inputs, residual)
                ata, atb = ata + batch_ata, atb + batch_atb
                residual_norm += residual.double().pow(2).sum().item()
    finally:
        unit_inputs.remove()
        norm_inputs.remove()
    return ata, atb, residual_norm


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
        student = (adapter, head_scale, neuron_scale)
        if len(kept_heads) and (index > 0 or options.tune_first_layer_attention):
            terms = _head_terms(parts.attention_output.weight, kept_heads, shape)
            ata, atb, residual_norm = _normal_equations(
                layer, layer_inputs, student_states, attention_targets, parts.attention_output, parts.attention_norm,
                student, terms, cls_only=False,
            )
            scales, fit = _fit(index, "attention", ata, atb, residual_norm, options)
            fits.append(fit)
            if scales is not None:
                head_scale[index, kept_heads] = torch.from_numpy(scales).float()
        elif len(kept_heads):
            fits.append(SublayerFit(index, "attention", len(kept_heads), False, "attention of layer 0 is not tuned"))

        # FFN: columns are the kept neurons' activations times their columns of W2.
        if len(kept_neurons):
            terms = _neuron_terms(parts.ffn_output.weight, kept_neurons)
            ata, atb, residual_norm = _normal_equations(
                layer, layer_inputs, student_states, ffn_targets, parts.ffn_output, parts.ffn_norm,
                student, terms, cls_only=options.cls_only_last_ffn and last_layer,
            )
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
