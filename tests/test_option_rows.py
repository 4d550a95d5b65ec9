"""Multiple choice, one row per option: the layout, scores that match the full model, and DP-SGD
that clips one gradient per record (its C option rows together), not one per row."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from per_record import one_backward_per_record

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import (
    attach_adapter,
    build_adapter_model,
    get_vector,
    set_vector,
    trainable_parameters,
)
from securefed.model.option_rows import NOT_SCORED
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import batch_loss, choice_scores, encode_examples, trim_padding
from securefed.privacy.dp_sgd import dp_training
from securefed.tasks import get_task

TASK = get_task("synthetic_medqa")
EXAMPLES = TASK.load(TaskConfig(name="synthetic_medqa", synthetic={"num_examples": 40}), 0)[:6]


def _no_dropout(bundle) -> None:
    for module in bundle.model.modules():  # Opacus hooks need train mode; same function both
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _perturbed(bundle) -> None:
    """Move the adapter off its initialisation (LoRA's B starts at zero)."""
    v = get_vector(bundle.model)
    noise = np.random.default_rng(1).normal(0.0, 0.05, v.shape).astype(np.float32)
    set_vector(bundle.model, v + noise, bundle.spec)


@pytest.fixture(scope="module")
def encoder():
    cfg = ModelConfig(adapter_layers="top-2", target_modules=["query", "value"])
    bundle = build_adapter_model(cfg, num_labels=4, seed=0, per_option=True)
    _no_dropout(bundle)
    _perturbed(bundle)
    return bundle


@pytest.fixture(scope="module")
def causal(tiny_llama_config, offline_tokenizer):
    cfg = ModelConfig(adapter_layers="top-1", target_modules=["q_proj", "v_proj"])
    bundle = attach_adapter(
        cfg, tiny_llama_config, offline_tokenizer, num_labels=4, seed=0, per_option=True
    )
    _perturbed(bundle)
    return bundle


def _bundle(which, encoder, causal):
    return encoder if which == "encoder" else causal


def test_encoder_head_scores_each_pair_with_one_output(encoder):
    head = [p for n, p in trainable_parameters(encoder.model) if "classifier" in n]
    assert {tuple(p.shape) for p in head} == {(1, 384), (1,)}
    rows = encode_examples(EXAMPLES, TASK, encoder, max_length=96)
    ids, mask, targets, labels = rows.tensors
    assert ids.shape == mask.shape == (6, 4, 96) and labels.shape == (6,)
    tok = encoder.tokenizer
    first = tok.decode(ids[0, 2][mask[0, 2] == 1], skip_special_tokens=True)
    assert first.endswith(EXAMPLES[0].choices[2].lower())  # the pair's second text: option 2


def test_causal_rows_score_each_option_text(causal):
    rows = encode_examples(EXAMPLES, TASK, causal, max_length=96)
    ids, mask, targets, _ = rows.tensors
    tok = causal.tokenizer
    for j, option in enumerate(EXAMPLES[0].choices):
        scored = targets[0, j][targets[0, j] != NOT_SCORED]
        assert tok.decode(scored).strip() == option.lower()  # the BERT vocabulary lowercases
        assert torch.equal(scored, ids[0, j][targets[0, j] != NOT_SCORED])  # at their positions
        assert int(mask[0, j].sum()) - 1 == int(torch.nonzero(targets[0, j] != NOT_SCORED)[-1])


@pytest.mark.parametrize("which", ["encoder", "causal"])
def test_cached_prefix_scores_like_the_full_model(which, encoder, causal):
    bundle = _bundle(which, encoder, causal)
    rows = encode_examples(EXAMPLES, TASK, bundle, max_length=96)
    top = "top-2" if which == "encoder" else "top-1"
    view, cached = scorer_and_rows(bundle, rows, top, batch_size=5)
    bundle.model.eval()
    with torch.no_grad():
        full = choice_scores(bundle, *trim_padding(*rows.tensors[:2]), rows.tensors[2])
        suffix = choice_scores(view, *trim_padding(*cached.tensors[:2]), cached.tensors[2])
    assert full.shape == (6, 4)
    torch.testing.assert_close(suffix, full, rtol=1e-4, atol=1e-5)


def test_causal_prefix_runs_each_prompt_once_and_scores_like_whole_rows(causal):
    """A record's C rows share their prompt: the frozen prefix reads it once (cached keys and
    values for the options), and the suffix then scores exactly as the full model does."""
    short = [dataclasses.replace(ex, text=ex.text[:60]) for ex in EXAMPLES]  # nothing cut
    rows = encode_examples(short, TASK, causal, max_length=128)
    embeddings = causal.model.get_base_model().get_input_embeddings()
    read: list[int] = []
    hook = embeddings.register_forward_hook(lambda _m, args, _o: read.append(args[0].numel()))
    try:
        view, cached = scorer_and_rows(causal, rows, "top-1", batch_size=5)
    finally:
        hook.remove()
    mask, targets = rows.tensors[1], rows.tensors[2]
    prompt = (targets != NOT_SCORED).int().argmax(dim=-1)[:, 0]  # [N]
    once = sum(int(p) + int((m.sum(-1).max() - p) * 4) for p, m in zip(prompt, mask, strict=True))
    assert sum(read) == once < int(mask.sum())
    causal.model.eval()
    with torch.no_grad():
        full = choice_scores(causal, *trim_padding(*rows.tensors[:2]), targets)
        suffix = choice_scores(view, *trim_padding(*cached.tensors[:2]), cached.tensors[2])
    torch.testing.assert_close(suffix, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("which", ["encoder", "causal"])
def test_dp_sgd_clips_one_gradient_per_record_with_its_options_together(which, encoder, causal):
    """What DP-SGD clips, against one plain backward per record (its C rows in one loss)."""
    bundle = _bundle(which, encoder, causal)
    top = "top-2" if which == "encoder" else "top-1"
    view, data = scorer_and_rows(
        bundle, encode_examples(EXAMPLES, TASK, bundle, 96), top, batch_size=6
    )
    view.model.train()
    params = [p for _, p in trainable_parameters(view.model)]
    expected = one_backward_per_record(view, data.tensors, params)
    optimizer = torch.optim.SGD(params, lr=0.0)
    with dp_training(view.model, optimizer, data, noise_multiplier=1.0, max_grad_norm=1e9,
                     batch_size=len(EXAMPLES), generator=torch.Generator().manual_seed(0),
                     rows_per_record=4) as dp:  # fmt: skip
        batch = next(iter(dp.loader))  # q = 1: every record, in order
        assert batch[1].shape[:2] == (len(EXAMPLES), 4)
        batch_loss(view, batch).backward()
        assert {int(p.grad_sample.shape[0]) for p in params} == {4 * len(EXAMPLES)}  # rows
        dp.optimizer.clip_and_accumulate()
        for k, p in enumerate(params):
            assert p.grad_sample.shape[0] == len(EXAMPLES)  # one per record
            for i in range(len(EXAMPLES)):
                torch.testing.assert_close(p.grad_sample[i], expected[i][k], rtol=1e-4, atol=1e-6)
        dp.optimizer.zero_grad(set_to_none=True)


def test_dp_sgd_refuses_option_rows_it_was_not_told_of(encoder):
    view, data = scorer_and_rows(
        encoder, encode_examples(EXAMPLES, TASK, encoder, 96), "top-2", batch_size=6
    )
    view.model.train()
    params = [p for _, p in trainable_parameters(view.model)]
    with dp_training(view.model, torch.optim.SGD(params, lr=0.0), data, noise_multiplier=1.0,
                     max_grad_norm=1.0, batch_size=len(EXAMPLES),
                     generator=torch.Generator().manual_seed(0)) as dp:  # fmt: skip
        batch_loss(view, next(iter(dp.loader))).backward()
        with pytest.raises(RuntimeError, match="one row per example"):
            dp.optimizer.clip_and_accumulate()
        dp.optimizer.zero_grad(set_to_none=True)


def test_chat_template_opens_the_assistant_turn_and_the_option_follows_it(causal):
    tok = copy.deepcopy(causal.tokenizer)
    tok.chat_template = (
        "{% for m in messages %}user says {{ m['content'] }} [SEP] {% endfor %}"
        "{% if add_generation_prompt %}assistant says{% endif %}"
    )
    rows = encode_examples(EXAMPLES[:1], TASK, dataclasses.replace(causal, tokenizer=tok), 128)
    ids, mask, targets, _ = rows.tensors
    row, scored = ids[0, 1][mask[0, 1] == 1], targets[0, 1] != NOT_SCORED
    prompt = tok.decode(ids[0, 1][: int(torch.nonzero(scored)[0])])
    assert prompt.startswith("user says answer the following") and prompt.endswith("assistant says")
    assert tok.decode(row[-int(scored.sum()) :]) == EXAMPLES[0].choices[1].lower()
