"""Top-N adapters over cached prefix activations: the same model, the same gradients, less work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.grad_sample import GradSampleHooks
from per_record import one_backward_per_record
from torch.utils.data import TensorDataset

from securefed.config import ModelConfig
from securefed.errors import ConfigError
from securefed.model.adapter_layers import top_layers
from securefed.model.adapters import (
    attach_adapter,
    base_weights_hash,
    build_adapter_model,
    get_vector,
    set_vector,
    trainable_parameters,
    vector_spec,
)
from securefed.model.prefix_cache import prefix_activations, suffix_view
from securefed.model.training import batch_loss, choice_scores, train_local, trim_padding
from securefed.privacy.dp_sgd import DPPlan

TEXTS = [
    "revenue fell sharply in the third quarter",
    "profits beat the forecast",
    "the company moved its headquarters to Espoo in May after the merger",
    "net debt was stable",
]


def _rows(bundle, num_choices: int) -> TensorDataset:
    enc = bundle.tokenizer(TEXTS, max_length=24, truncation=True, padding="max_length",
                           return_tensors="pt")  # fmt: skip
    answers = torch.tensor([[101, 102, 103, 104][:num_choices]] * len(TEXTS))  # [N, C]
    labels = torch.tensor([0, 2, 1, 1]) % num_choices
    return TensorDataset(enc["input_ids"], enc["attention_mask"], answers, labels)


@pytest.fixture(scope="module")
def encoder_top2():
    bundle = build_adapter_model(ModelConfig(adapter_layers="top-2"), num_labels=3, seed=0)
    return bundle, suffix_view(bundle, 2)


@pytest.fixture(scope="module")
def causal_top1(tiny_llama_config, offline_tokenizer):
    cfg = ModelConfig(adapter_layers="top-1")
    bundle = attach_adapter(cfg, tiny_llama_config, offline_tokenizer, num_labels=4, seed=0)
    return bundle, suffix_view(bundle, 1)


def _perturbed(bundle) -> None:
    """Move the adapter off its initialisation (LoRA's B starts at zero)."""
    v = get_vector(bundle.model)
    noise = np.random.default_rng(1).normal(0.0, 0.05, v.shape).astype(np.float32)
    set_vector(bundle.model, v + noise, bundle.spec)


def _full_and_view_scores(bundle, view, num_choices):
    _perturbed(bundle)
    rows = _rows(bundle, num_choices)
    cached = prefix_activations(bundle, rows, top=len(_adapted_layers(bundle)), batch_size=3)
    bundle.model.eval(), view.model.eval()
    with torch.no_grad():
        ids, mask = trim_padding(rows.tensors[0], rows.tensors[1])
        full = choice_scores(bundle, ids, mask, rows.tensors[2])
        acts, mask = trim_padding(cached.tensors[0], cached.tensors[1])
        suffix = choice_scores(view, acts, mask, cached.tensors[2])
    return full, suffix


def _adapted_layers(bundle) -> set[str]:
    names = [n for n, _ in trainable_parameters(bundle.model)]
    return {n.split(".layers.")[-1].split(".layer.")[-1].split(".")[0] for n in names
            if ".layer." in n or ".layers." in n}  # fmt: skip


def test_adapter_sits_on_the_top_layers_only(encoder_top2, causal_top1):
    assert _adapted_layers(encoder_top2[0]) == {"4", "5"}  # MiniLM-L6: layers 0..5
    assert _adapted_layers(causal_top1[0]) == {"1"}  # the tiny Llama: layers 0..1


@pytest.mark.parametrize("which", ["encoder", "causal"])
def test_suffix_view_scores_exactly_like_the_full_model(which, encoder_top2, causal_top1):
    bundle, view = encoder_top2 if which == "encoder" else causal_top1
    full, suffix = _full_and_view_scores(bundle, view, 3 if which == "encoder" else 4)
    torch.testing.assert_close(suffix, full, rtol=1e-5, atol=1e-5)


def test_view_shares_the_adapter_and_its_spec(encoder_top2):
    bundle, view = encoder_top2
    assert vector_spec(view.model) == bundle.spec == view.spec
    shared = {id(p) for _, p in trainable_parameters(bundle.model)}
    assert {id(p) for _, p in trainable_parameters(view.model)} == shared
    assert len(list(view.model.parameters())) < len(list(bundle.model.parameters()))


def test_training_the_view_trains_the_adapter_not_the_base(encoder_top2):
    bundle, view = encoder_top2
    cached = prefix_activations(bundle, _rows(bundle, 3), top=2, batch_size=4)
    base, before = base_weights_hash(bundle.model), get_vector(bundle.model)
    train_local(view, cached, steps=2, batch_size=2, lr=1e-2, weight_decay=0.0,
                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert np.any(get_vector(bundle.model) != before)
    assert base_weights_hash(bundle.model) == base


def test_per_sample_gradients_through_the_view_match_the_full_model():
    """What DP-SGD clips: Opacus's per-example gradients on the view, against one backward per
    example through the whole model on its tokens."""
    bundle = build_adapter_model(ModelConfig(adapter_layers="top-2"), num_labels=3, seed=0)
    for module in bundle.model.modules():  # Opacus hooks need train mode; same function both
        if isinstance(module, torch.nn.Dropout):  # sides (every BERT dropout reads .p)
            module.p = 0.0
    view = suffix_view(bundle, 2)
    _perturbed(bundle)
    rows = _rows(bundle, 3)
    cached = prefix_activations(bundle, rows, top=2, batch_size=4)
    bundle.model.train(), view.model.train()
    params = [p for _, p in trainable_parameters(bundle.model)]
    expected = one_backward_per_record(bundle, rows.tensors, params)
    hooks = GradSampleHooks(view.model, batch_first=True, loss_reduction="mean", strict=True)
    try:
        batch_loss(view, cached.tensors).backward()
        for k, p in enumerate(params):
            for i in range(len(TEXTS)):  # "mean": Opacus undoes the 1/B of the batch mean
                torch.testing.assert_close(p.grad_sample[i], expected[i][k], rtol=1e-4, atol=1e-6)
    finally:
        hooks.cleanup()
        for p in params:
            p.grad_sample = None
        bundle.model.zero_grad(set_to_none=True)


def test_dp_sgd_runs_on_the_view_with_one_row_per_example(encoder_top2):
    bundle, view = encoder_top2
    cached = prefix_activations(bundle, _rows(bundle, 3), top=2, batch_size=4)
    stats = train_local(view, cached, steps=3, batch_size=2, lr=1e-2, weight_decay=0.0,
                        generator=torch.Generator().manual_seed(0),
                        dp=DPPlan(noise_multiplier=1.0, max_grad_norm=1.0))  # fmt: skip
    assert stats.steps == 3 and stats.noise_multiplier == 1.0
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None
                   for p in bundle.model.parameters())  # fmt: skip


def test_cached_activations_are_a_deterministic_function_of_the_example(encoder_top2):
    bundle, _ = encoder_top2
    rows = _rows(bundle, 3)
    one = prefix_activations(bundle, rows, top=2, batch_size=4).tensors[0]
    two = prefix_activations(bundle, rows, top=2, batch_size=4).tensors[0]
    assert torch.equal(one, two)
    mask = prefix_activations(bundle, rows, top=2, batch_size=4).tensors[1]
    assert torch.all(one[mask == 0] == 0)  # padding carries nothing


def test_layer_choice_is_checked_against_the_backbone():
    assert top_layers("all", 6) is None
    assert top_layers("top-6", 6) == 6
    with pytest.raises(ConfigError, match="model.adapter_layers"):
        top_layers("top-7", 6)
    with pytest.raises(ConfigError, match="model.adapter_layers"):
        build_adapter_model(ModelConfig(adapter_layers="top-9"), num_labels=3, seed=0)


@pytest.mark.parametrize("targets", [None, ["query", "value", "output.dense"]])
def test_ia3_sits_on_the_top_layers_and_its_view_scores_like_the_full_model(targets):
    """PEFT's IA3Config has no layers_to_transform: the top-N placement names each module."""
    cfg = ModelConfig(adapter="ia3", adapter_layers="top-2", target_modules=targets)
    bundle = build_adapter_model(cfg, num_labels=3, seed=0)
    assert _adapted_layers(bundle) == {"4", "5"}
    everywhere = build_adapter_model(cfg.model_copy(update={"adapter_layers": "all"}), 3, seed=0)
    assert _adapted_layers(everywhere) == {str(i) for i in range(6)}
    full, suffix = _full_and_view_scores(bundle, suffix_view(bundle, 2), 3)
    torch.testing.assert_close(suffix, full, rtol=1e-5, atol=1e-5)
