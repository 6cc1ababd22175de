"""The pruning stages on tiny random models: search, rearrangement, tuning, slicing."""

import itertools
import math

import numpy as np
import pytest
import torch
from tiny import padded_batches, tiny_bert, tiny_distilbert, tiny_roberta

from bertprune.arch import get_adapter
from bertprune.cost import MacCostModel
from bertprune.importance import collect_mask_gradients
from bertprune.masking import apply_masks
from bertprune.rearrange import pruning_objective, rearrange_layer, rearrange_masks
from bertprune.search import search_masks
from bertprune.slicing import encoder_parameter_count, slice_model
from bertprune.tuning import TuningOptions, _fit, tune_masks

MODELS = {"bert": tiny_bert, "distilbert": tiny_distilbert, "roberta": tiny_roberta}


def _inputs(batches):
    return [{name: value for name, value in batch.items() if name != "labels"} for batch in batches]


def _batches_for(name, **kwargs):
    return padded_batches(token_type_ids=name != "distilbert", **kwargs)


# Stage 1: mask gradients


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_finite_difference(name):
    model = MODELS[name]()
    adapter = get_adapter(model)
    batch = _batches_for(name, num_batches=1)[0]
    gradients = collect_mask_gradients(model, adapter, [batch])
    assert gradients.head.shape == (1, 3, 4)
    assert gradients.neuron.shape == (1, 3, 48)

    # The derivative of the loss with respect to one head's mask, by central differences.
    layer, head, step = 1, 2, 1e-3
    losses = []
    for sign in (1, -1):
        head_mask = torch.ones(3, 4, dtype=torch.float64)
        head_mask[layer, head] += sign * step
        with torch.no_grad(), apply_masks(adapter, head_mask.float(), None):
            losses.append(model(**batch).loss.item())
    numeric = (losses[0] - losses[1]) / (2 * step)
    assert gradients.head[0, layer, head].item() == pytest.approx(numeric, rel=0.05, abs=1e-4)


def test_per_example_gradients_count():
    model = tiny_bert()
    batches = _batches_for("bert", num_batches=2, batch_size=3)
    gradients = collect_mask_gradients(model, get_adapter(model), batches, mode="per_example")
    assert gradients.head.shape[0] == 6
    assert gradients.mode == "per_example"
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_gradient_mode_rejected():
    model = tiny_bert()
    with pytest.raises(ValueError, match="per_batch"):
        collect_mask_gradients(model, get_adapter(model), [], mode="per_token")


# Stage 2: search


def _brute_force(head_importance, neuron_importance, cost, constraint):
    """Best kept importance over every subset of heads and neurons that fits the budget."""
    budget = cost.budget(constraint)
    heads = head_importance.flatten().tolist()
    neurons = sorted(neuron_importance.flatten().tolist(), reverse=True)
    best = -math.inf
    for size in range(1, len(heads) + 1):
        for subset in itertools.combinations(range(len(heads)), size):
            remaining = budget - size * cost.mac_per_head
            if remaining < 0:
                continue
            # Given the heads, the best neurons are the most important ones that fit.
            count = min(int(remaining // cost.mac_per_neuron), len(neurons))
            best = max(best, sum(heads[i] for i in subset) + sum(neurons[:count]))
    return best


@pytest.mark.parametrize("constraint", [0.3, 0.5, 0.75, 1.0])
def test_search_equals_brute_force(constraint):
    generator = torch.Generator().manual_seed(3)
    model = tiny_bert()
    shape = get_adapter(model).shape()
    cost = MacCostModel.for_shape(shape, seq_len=10.0)
    head_importance = torch.rand(2, 4, generator=generator)
    neuron_importance = torch.rand(2, 48, generator=generator) * 0.05
    # The tiny model has 3 layers; two layers' worth of heads keeps the brute force small.
    cost = MacCostModel(cost.seq_len, cost.mac_per_head, cost.mac_per_neuron, shape.__class__(2, 4, 8, 32, 48))
    result = search_masks(head_importance, neuron_importance, cost, constraint)
    found = (head_importance * result.head_mask).sum().item() + (neuron_importance * result.neuron_mask).sum().item()
    assert found == pytest.approx(_brute_force(head_importance, neuron_importance, cost, constraint), rel=1e-6)
    assert result.kept_macs <= result.budget + 1e-6


def test_search_keeps_one_head():
    shape = get_adapter(tiny_bert()).shape()
    cost = MacCostModel.for_shape(shape, seq_len=10.0)
    result = search_masks(torch.rand(3, 4), torch.rand(3, 48), cost, 0.01)
    assert result.kept_heads == 1
    assert int(result.head_mask.sum()) == 1


def test_search_rejects_bad_constraint():
    shape = get_adapter(tiny_bert()).shape()
    cost = MacCostModel.for_shape(shape, seq_len=10.0)
    with pytest.raises(ValueError, match="constraint"):
        search_masks(torch.rand(3, 4), torch.rand(3, 48), cost, 1.5)


def test_mac_cost_formulas():
    shape = get_adapter(tiny_bert()).shape()
    cost = MacCostModel.for_shape(shape, seq_len=10.0)
    assert cost.mac_per_head == 4 * 10 * 32 * 8 + 2 * 10 * 10 * 8
    assert cost.mac_per_neuron == 2 * 10 * 32
    assert cost.dense_macs() == 12 * cost.mac_per_head + 144 * cost.mac_per_neuron


# Stage 3: rearrangement


@pytest.mark.parametrize("seed", range(5))
def test_rearrangement_never_increases_objective(seed):
    generator = torch.Generator().manual_seed(seed)
    gradients = torch.randn(16, 2, 30, generator=generator)
    mask = (torch.rand(2, 30, generator=generator) > 0.4).float()
    rearranged = rearrange_masks(gradients, mask)
    for layer in range(2):
        assert rearranged[layer].sum() == mask[layer].sum()
        before = pruning_objective(gradients[:, layer], mask[layer] == 0)
        after = pruning_objective(gradients[:, layer], rearranged[layer] == 0)
        assert after <= before + 1e-9


def test_rearrangement_swaps_in_cancelling_unit():
    # Units 0 and 1 have the smallest diagonal importance but add up; unit 2 cancels unit 0,
    # so one swap (prune 2, keep 0) lowers the objective from 8.41 to 0.05.
    gradients = torch.tensor([[1.0, 1.0, -1.2, 3.0], [1.0, 1.1, -1.2, 3.0]])
    keep = torch.tensor([1.0, 1.0, 0.0, 0.0])
    result = rearrange_layer(gradients, keep)
    assert result.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert pruning_objective(gradients, result == 0) == pytest.approx(0.05)


def test_rearrangement_extremes_unchanged():
    gradients = torch.randn(4, 6)
    for keep in (torch.ones(6), torch.zeros(6)):
        assert torch.equal(rearrange_layer(gradients, keep), keep)


# Stage 4: tuning


def _tuning_setup(name, constraint=0.5):
    model = MODELS[name]()
    adapter = get_adapter(model)
    batches = _batches_for(name, num_batches=4, batch_size=8)
    gradients = collect_mask_gradients(model, adapter, batches)
    cost = MacCostModel.for_shape(adapter.shape(), seq_len=12.0)
    result = search_masks(gradients.head_importance(), gradients.neuron_importance(), cost, constraint)
    return model, adapter, _inputs(batches), result.head_mask, result.neuron_mask


@pytest.mark.parametrize("name", MODELS)
def test_tuning_lowers_reconstruction_error(name):
    model, adapter, inputs, head_mask, neuron_mask = _tuning_setup(name)
    dense_head, dense_neuron = torch.ones_like(head_mask), torch.ones_like(neuron_mask)
    options = TuningOptions(damping=0.0, tune_first_layer_attention=True, cls_only_last_ffn=False)
    result = tune_masks(model, adapter, inputs, head_mask, neuron_mask, dense_head, dense_neuron, options)
    applied = [fit for fit in result.fits if fit.applied]
    assert applied, "no sublayer was tuned"
    for fit in applied:
        assert fit.error_after < fit.error_before
    # Pruned units stay pruned, and the last hidden state moves closer to the dense model's.
    assert torch.all(result.head_mask[head_mask == 0] == 0)
    assert torch.all(result.neuron_mask[neuron_mask == 0] == 0)

    def distance(head, neuron):
        total = 0.0
        with torch.no_grad():
            for batch in inputs:
                reference = model.base_model(**batch).last_hidden_state
                with apply_masks(adapter, head, neuron):
                    pruned = model.base_model(**batch).last_hidden_state
                total += (reference - pruned)[batch["attention_mask"].bool()].pow(2).sum().item()
        return total

    assert distance(result.head_mask, result.neuron_mask) < distance(head_mask, neuron_mask)


def test_tuning_handles_single_neuron_layer():
    model, adapter, inputs, head_mask, neuron_mask = _tuning_setup("bert")
    neuron_mask[1] = 0
    neuron_mask[1, 7] = 1
    result = tune_masks(model, adapter, inputs, head_mask, neuron_mask, torch.ones_like(head_mask), torch.ones_like(neuron_mask))
    fit = next(fit for fit in result.fits if fit.layer == 1 and fit.sublayer == "ffn")
    assert fit.units == 1
    assert torch.count_nonzero(result.neuron_mask[1]) == 1


def test_tuning_skips_first_layer_attention():
    model, adapter, inputs, head_mask, neuron_mask = _tuning_setup("bert")
    result = tune_masks(model, adapter, inputs, head_mask, neuron_mask, torch.ones_like(head_mask), torch.ones_like(neuron_mask))
    first = [fit for fit in result.fits if fit.layer == 0 and fit.sublayer == "attention"]
    assert len(first) == 1
    assert not first[0].applied
    assert torch.equal(result.head_mask[0], head_mask[0])


def test_tuning_guard_keeps_binary_mask():
    # A system whose least-squares scales are far outside [-10, 10] is rejected by the guard.
    ata = np.array([[1e-6]])
    atb = np.array([1.0])
    scales, fit = _fit(3, "ffn", ata, atb, residual_norm=1.0, options=TuningOptions(damping=0.0))
    assert scales is None
    assert not fit.applied
    assert "[-10, 10]" in fit.reason


def test_tuning_guard_continues_with_later_layers(caplog):
    model, adapter, inputs, head_mask, neuron_mask = _tuning_setup("bert")
    options = TuningOptions(scale_bound=1.0 + 1e-12, damping=0.0)
    result = tune_masks(model, adapter, inputs, head_mask, neuron_mask, torch.ones_like(head_mask), torch.ones_like(neuron_mask), options)
    rejected = [fit for fit in result.fits if fit.reason.startswith("a scale left")]
    assert rejected, "the tight bound should reject some fits"
    assert {fit.layer for fit in result.fits if fit.sublayer == "ffn"} == {0, 1, 2}
    assert "keeping its binary mask" in caplog.text


# Physical slicing


def _random_scales(seed, empty_attention_layer=None, empty_ffn_layer=None):
    generator = torch.Generator().manual_seed(seed)
    head = (torch.rand(3, 4, generator=generator) > 0.4).float() * (0.5 + torch.rand(3, 4, generator=generator))
    neuron = (torch.rand(3, 48, generator=generator) > 0.5).float() * (0.5 + torch.rand(3, 48, generator=generator))
    head[head.sum(1) == 0, 0] = 1.0
    if empty_attention_layer is not None:
        head[empty_attention_layer] = 0
    if empty_ffn_layer is not None:
        neuron[empty_ffn_layer] = 0
    return head, neuron


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("empty", [(None, None), (1, None), (None, 2), (0, 0)])
def test_masked_and_sliced_agree(name, empty):
    model = MODELS[name]()
    adapter = get_adapter(model)
    head, neuron = _random_scales(7, *empty)
    batch = _inputs(_batches_for(name, num_batches=1, batch_size=6))[0]
    with torch.no_grad(), apply_masks(adapter, head, neuron):
        masked = model(**batch).logits
        masked_hidden = model.base_model(**batch).last_hidden_state
    parameters_before = encoder_parameter_count(adapter)
    slice_model(adapter, head, neuron)
    with torch.no_grad():
        sliced = model(**batch).logits
        sliced_hidden = model.base_model(**batch).last_hidden_state
    assert (masked - sliced).abs().max().item() < 1e-5
    real = batch["attention_mask"].bool()
    assert (masked_hidden - sliced_hidden)[real].abs().max().item() < 1e-5
    heads, neurons = adapter.kept_counts()
    assert heads == [int(row.count_nonzero()) for row in head]
    assert neurons == [int(row.count_nonzero()) for row in neuron]
    assert encoder_parameter_count(adapter) < parameters_before


@pytest.mark.parametrize("name", MODELS)
def test_sliced_model_honours_padding(name):
    model = MODELS[name]()
    adapter = get_adapter(model)
    head, neuron = _random_scales(11)
    slice_model(adapter, head, neuron)
    batch = _inputs(_batches_for(name, num_batches=1, batch_size=4))[0]
    # Row 1 alone, without padding, must give the same logits as in the padded batch.
    length = int(batch["attention_mask"][1].sum())
    single = {key: value[1:2, :length] for key, value in batch.items()}
    with torch.no_grad():
        padded_logits = model(**batch).logits[1]
        single_logits = model(**single).logits[0]
    assert (padded_logits - single_logits).abs().max().item() < 1e-5


def test_eager_and_sdpa_masks_agree():
    head, neuron = _random_scales(5)
    batch = _inputs(_batches_for("bert", num_batches=1))[0]
    outputs = []
    for implementation in ("eager", "sdpa"):
        model = tiny_bert(attn_implementation=implementation)
        with torch.no_grad(), apply_masks(get_adapter(model), head, neuron):
            outputs.append(model(**batch).logits)
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-5


def test_slicing_twice_rejected():
    model = tiny_bert()
    adapter = get_adapter(model)
    head, neuron = _random_scales(2, empty_attention_layer=1)
    slice_model(adapter, head, neuron)
    with pytest.raises(ValueError, match="already sliced"):
        slice_model(adapter, head, neuron)


def test_unsupported_architecture_named():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20))
    with pytest.raises(ValueError, match="supports model_type bert, roberta, distilbert"):
        get_adapter(model)


def test_mask_shape_mismatch_rejected():
    model = tiny_bert()
    with pytest.raises(ValueError, match=r"head mask has shape \(3, 5\), the model needs \(3, 4\)"):
        with apply_masks(get_adapter(model), torch.ones(3, 5), None):
            pass
