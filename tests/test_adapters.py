"""Adapters: only the adapter trains and travels; load(get(model)) is the identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from securefed.config import ModelConfig
from securefed.model.adapters import (
    attach_adapter,
    base_weights_hash,
    build_adapter_model,
    get_vector,
    set_vector,
    trainable_parameters,
)

ADAPTERS = ["lora", "qlora", "ia3"]


def _train_step(bundle, tokenizer, causal: bool) -> None:
    enc = tokenizer(
        ["revenue fell sharply", "profits beat the forecast"], return_tensors="pt", padding=True
    )
    bundle.model.train()
    out = bundle.model(**enc)
    logits = out.logits if not causal else out.logits[:, -1, :3]
    loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 2]))
    loss.backward()
    torch.optim.SGD([p for _, p in trainable_parameters(bundle.model)], lr=0.5).step()
    bundle.model.eval()
    with torch.no_grad():
        bundle.model(**enc)  # an eval forward after training (QLoRA's CPU repack path)


@pytest.fixture(scope="module", params=ADAPTERS)
def encoder_bundle(request):
    return build_adapter_model(ModelConfig(adapter=request.param), num_labels=3, seed=0)


@pytest.fixture(scope="module", params=ADAPTERS)
def causal_bundle(request, tiny_llama_config, offline_tokenizer):
    cfg = ModelConfig(adapter=request.param, kind="auto")
    return attach_adapter(cfg, tiny_llama_config, offline_tokenizer, num_labels=4, seed=0)


def test_encoder_only_adapter_changes_and_base_is_frozen(encoder_bundle):
    before_base = base_weights_hash(encoder_bundle.model)
    before = get_vector(encoder_bundle.model)
    _train_step(encoder_bundle, encoder_bundle.tokenizer, causal=False)
    after = get_vector(encoder_bundle.model)
    assert encoder_bundle.kind == "encoder"
    assert np.any(after != before), "the adapter must train"
    assert base_weights_hash(encoder_bundle.model) == before_base, "base weights moved"


def test_causal_only_adapter_changes_and_base_is_frozen(causal_bundle, offline_tokenizer):
    before_base = base_weights_hash(causal_bundle.model)
    before = get_vector(causal_bundle.model)
    _train_step(causal_bundle, offline_tokenizer, causal=True)
    assert causal_bundle.kind == "causal"
    assert np.any(get_vector(causal_bundle.model) != before)
    assert base_weights_hash(causal_bundle.model) == before_base


def test_vector_round_trip_is_identity(encoder_bundle):
    spec = encoder_bundle.spec
    original = get_vector(encoder_bundle.model)
    noise = np.random.default_rng(0).normal(size=spec.size).astype(np.float32)
    set_vector(encoder_bundle.model, noise, spec)
    assert np.array_equal(get_vector(encoder_bundle.model), noise)
    set_vector(encoder_bundle.model, original, spec)
    assert np.array_equal(get_vector(encoder_bundle.model), original)
    assert spec.size == original.shape[0]


def test_vector_of_wrong_size_is_refused(encoder_bundle):
    with pytest.raises(ValueError, match="does not match spec"):
        set_vector(encoder_bundle.model, np.zeros(3, np.float32), encoder_bundle.spec)


def test_spec_hash_depends_on_adapter_kind():
    lora = build_adapter_model(ModelConfig(adapter="lora"), num_labels=3, seed=0)
    ia3 = build_adapter_model(ModelConfig(adapter="ia3"), num_labels=3, seed=0)
    assert lora.spec.hash != ia3.spec.hash
    assert lora.spec.size > ia3.spec.size


def test_qlora_base_is_4bit():
    bundle = build_adapter_model(ModelConfig(adapter="qlora"), num_labels=3, seed=0)
    kinds = {type(m).__name__ for m in bundle.model.modules()}
    assert "Linear4bit" in kinds
