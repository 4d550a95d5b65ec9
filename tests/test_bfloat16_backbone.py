"""``model.dtype: bfloat16`` (``configs/llm.yaml``): the frozen backbone computes in bfloat16
while the adapter it trains stays float32.

On a CPU with bfloat16 matrix units the frozen layers then run several times faster
(``benchmarks/llm_round_cost.py``), but an adapter stored in bfloat16 would round AdamW's small
updates away (8 bits of mantissa: a step of 1e-5 on a weight of 0.1 is below half its spacing).
PEFT keeps adapter weights float32 over a half-precision base (``autocast_adapter_dtype``); this
pins that, the cached prefix in bfloat16, and scores that stay close to float32's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import (
    attach_adapter,
    get_vector,
    set_vector,
    trainable_parameters,
)
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import choice_scores, encode_examples, train_local, trim_padding
from securefed.tasks import get_task

TASK = get_task("synthetic_medqa")
EXAMPLES = TASK.load(TaskConfig(name="synthetic_medqa", synthetic={"num_examples": 40}), 0)[:8]


def _bundle(dtype, tiny_llama_config, offline_tokenizer):
    cfg = ModelConfig(adapter_layers="top-1", target_modules=["q_proj", "v_proj"], dtype=dtype)
    return attach_adapter(
        cfg, tiny_llama_config, offline_tokenizer, num_labels=4, seed=0, per_option=True
    )


@pytest.fixture(scope="module")
def pair(tiny_llama_config, offline_tokenizer):
    """The same backbone and adapter in float32 and with a bfloat16 backbone."""
    full = _bundle("float32", tiny_llama_config, offline_tokenizer)
    half = _bundle("bfloat16", tiny_llama_config, offline_tokenizer)
    half.model.load_state_dict(full.model.state_dict())  # the same weights, rounded
    return full, half


def test_the_backbone_is_bfloat16_and_the_adapter_float32(pair):
    _, half = pair
    trained = dict(trainable_parameters(half.model))
    assert trained and all(p.dtype == torch.float32 for p in trained.values())
    frozen = [p for n, p in half.model.named_parameters() if n not in trained]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)


def test_the_cached_prefix_is_bfloat16_and_scores_stay_close_to_float32(pair):
    scores = {}
    for bundle in pair:
        rows = encode_examples(EXAMPLES, TASK, bundle, max_length=128)
        view, cached = scorer_and_rows(bundle, rows, "top-1", batch_size=4)
        dtype = next(p for p in bundle.model.parameters() if not p.requires_grad).dtype
        assert cached.tensors[0].dtype == dtype
        view.model.eval()
        with torch.no_grad():
            ids, mask = trim_padding(*cached.tensors[:2])
            scores[dtype] = choice_scores(view, ids, mask, cached.tensors[2]).float()
    # bfloat16 keeps ~3 significant digits: mean log-likelihoods of ~-10 nats within 0.1
    torch.testing.assert_close(scores[torch.bfloat16], scores[torch.float32], atol=0.1, rtol=0.0)


def test_a_small_adamw_step_moves_every_adapter_weight(pair):
    """lr 1e-5: in bfloat16 the update of a LoRA A weight (|w| ~ 0.1) would round to nothing.
    B is moved off zero first (at zero, A gets no gradient)."""
    _, half = pair
    start = get_vector(half.model)
    start += np.random.default_rng(1).normal(0.0, 0.05, start.shape).astype(np.float32)
    set_vector(half.model, start, half.spec)
    rows = encode_examples(EXAMPLES, TASK, half, max_length=128)
    view, cached = scorer_and_rows(half, rows, "top-1", batch_size=4)
    before = get_vector(half.model)
    train_local(view, cached, steps=1, batch_size=8, lr=1e-5, weight_decay=0.0,
                generator=torch.Generator().manual_seed(0))  # fmt: skip
    moved = get_vector(half.model) != before
    a_weights = np.concatenate(
        [np.full(p.numel(), ".lora_A." in n) for n, p in trainable_parameters(half.model)]
    )
    assert moved[a_weights].all()
