"""Multiple choice as rows of the model (an encoder: the question, then each option; a causal LM:
one row per option): the layout, scores that match the full model, and DP-SGD that clips one
gradient per record (its rows together), not one per row."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from per_record import one_backward_per_record

from securefed.config import ModelConfig, TaskConfig
from securefed.model.adapters import (
    attach_adapter,
    build_adapter_model,
    get_vector,
    set_vector,
    trainable_parameters,
)
from securefed.model.input_canaries import INPUT_CANARY_TOKENS, canary_token_rows
from securefed.model.option_rows import NOT_SCORED, SIMILARITY_SCALE, option_scores
from securefed.model.packed_options import shared_prompt_lengths
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import batch_loss, choice_scores, encode_examples, trim_padding
from securefed.privacy.canaries import CanaryPlan
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


def test_encoder_scores_each_option_by_its_similarity_to_the_question(encoder):
    assert not [n for n, _ in trainable_parameters(encoder.model) if "classifier" in n]  # no head
    rows = encode_examples(EXAMPLES, TASK, encoder, max_length=96)
    ids, mask, targets, labels = rows.tensors
    assert ids.shape == mask.shape == (6, 5, 96) and labels.shape == (6,)
    tok = encoder.tokenizer
    for j, text in enumerate((EXAMPLES[0].text, *EXAMPLES[0].choices)):
        assert torch.equal(ids[0, j][mask[0, j] == 1], torch.tensor(tok(text)["input_ids"]))
    # the score is the scaled cosine of the mean-pooled embeddings, question row first
    encoder.model.eval()
    with torch.no_grad():
        scores = choice_scores(encoder, *trim_padding(ids[:1], mask[:1]), targets[:1])  # [1, 4]
        bert = encoder.model.get_base_model().bert
        emb = []
        for j in range(5):
            one = ids[0, j][mask[0, j] == 1][None]
            emb.append(bert(input_ids=one).last_hidden_state[0].mean(0))
        cos = torch.nn.functional.cosine_similarity(emb[0][None], torch.stack(emb[1:]))
    torch.testing.assert_close(scores[0], SIMILARITY_SCALE * cos, rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("which", ["encoder", "causal", "causal packed"])
def test_dp_sgd_clips_one_gradient_per_record_with_its_options_together(which, encoder, causal):
    """What DP-SGD clips, against one plain backward per record (its R rows in one loss).
    Causal: prompts cut at max_length 96 differ per option (C whole rows, folded by the
    optimizer); uncut, a record is one packed row (``packed_options``), checked against its C
    whole rows."""
    bundle = _bundle(which.split()[0], encoder, causal)
    rows = 5 if which == "encoder" else 4  # the question and 4 options, or the 4 options
    top = "top-2" if which == "encoder" else "top-1"
    packed = which == "causal packed"
    short = [dataclasses.replace(ex, text=ex.text[:60]) for ex in EXAMPLES]  # nothing cut
    examples = short if packed else EXAMPLES
    view, data = scorer_and_rows(
        bundle, encode_examples(examples, TASK, bundle, 128 if packed else 96), top, batch_size=6
    )
    view.model.train()
    params = [p for _, p in trainable_parameters(view.model)]
    assert (shared_prompt_lengths(data.tensors[2]) is not None) == packed
    if which == "encoder":
        expected = one_backward_per_record(view, data.tensors, params)
    else:  # the reference: each record's C whole rows
        expected = one_backward_per_record(view, data.tensors, params, _whole_row_loss)
    optimizer = torch.optim.SGD(params, lr=0.0)
    with dp_training(view.model, optimizer, data, noise_multiplier=1.0, max_grad_norm=1e9,
                     batch_size=len(EXAMPLES), generator=torch.Generator().manual_seed(0),
                     rows_per_record=rows) as dp:  # fmt: skip
        batch = next(iter(dp.loader))  # q = 1: every record, in order
        assert batch[1].shape[:2] == (len(EXAMPLES), rows)
        batch_loss(view, batch).backward()
        # encoder: R rows per record, folded by the optimizer; causal: one packed row each
        model_rows = 1 if packed else rows
        assert {int(p.grad_sample.shape[0]) for p in params} == {model_rows * len(EXAMPLES)}
        dp.optimizer.clip_and_accumulate()
        for k, p in enumerate(params):
            assert p.grad_sample.shape[0] == len(EXAMPLES)  # one per record
            for i in range(len(EXAMPLES)):
                torch.testing.assert_close(p.grad_sample[i], expected[i][k], rtol=1e-4, atol=1e-6)
        dp.optimizer.zero_grad(set_to_none=True)


def _whole_row_loss(bundle, tensors) -> torch.Tensor:
    """A batch's loss from each record's C whole rows (the prompt C times)."""
    ids, mask, targets, labels = tensors
    ids, mask = trim_padding(ids, mask)
    return F.cross_entropy(option_scores(bundle, ids, mask, targets), labels)


@pytest.mark.parametrize("cached", [False, True])
def test_packed_row_scores_and_gradients_equal_the_whole_rows(causal, cached):
    """One packed row per record (its prompt once, then its options, each seeing only the
    prompt and itself) gives the scores and each record's gradient of its C whole rows."""
    short = [dataclasses.replace(ex, text=ex.text[:60]) for ex in EXAMPLES]  # nothing cut
    bundle, rows = causal, encode_examples(short, TASK, causal, max_length=128)
    if cached:
        bundle, rows = scorer_and_rows(causal, rows, "top-1", batch_size=5)
    ids, mask, targets, _ = rows.tensors
    assert shared_prompt_lengths(targets) is not None
    assert len({int(n) for n in (targets != NOT_SCORED).sum(-1).flatten()}) > 1  # lengths vary
    bundle.model.eval()
    with torch.no_grad():
        whole = option_scores(bundle, *trim_padding(ids, mask), targets)
        packed = choice_scores(bundle, *trim_padding(ids, mask), targets)
    torch.testing.assert_close(packed, whole, rtol=1e-4, atol=1e-5)
    params = [p for _, p in trainable_parameters(bundle.model)]
    expected = one_backward_per_record(bundle, rows.tensors, params, _whole_row_loss)
    for i, grads in enumerate(one_backward_per_record(bundle, rows.tensors, params)):  # packed
        for got, want in zip(grads, expected[i], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


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


def test_encoder_input_canaries_take_the_records_layout(encoder):
    """An input canary on a multiple-choice encoder is 1 + C rows like a record: its random
    tokens, then each option name alone; the records' scorer scores it."""
    plan = CanaryPlan("input", 3, (0,), seed=1)
    rows = canary_token_rows(plan, encoder, TASK, max_length=32)
    ids, mask, targets, labels = rows.tensors
    assert ids.shape == (3, 5, 32) and set(labels.tolist()) <= {0, 1, 2, 3}
    tok = encoder.tokenizer
    for j, name in enumerate(TASK.label_names, start=1):
        assert torch.equal(ids[0, j][mask[0, j] == 1], torch.tensor(tok(name)["input_ids"]))
    assert int(mask[0, 0].sum()) == INPUT_CANARY_TOKENS + 2  # [CLS] tokens [SEP]
    with torch.no_grad():
        assert choice_scores(encoder, *trim_padding(ids, mask), targets).shape == (3, 4)
