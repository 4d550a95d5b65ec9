"""Input canaries as rows of the model (black box): their encoding, cached prefix and losses.

``securefed.privacy.canaries`` draws each input canary's random tokens and random label from
the plan's seed; here they become rows like the task's own records: the backbone's special
tokens around ``INPUT_CANARY_TOKENS`` random tokens, padded to ``model.max_length``, the task's
answer ids (causal LMs), then, with ``top-N`` adapters, their own frozen-prefix activations
(``prefix_cache``; computed apart from the records' cache, so the records' rows are the same
with or without canaries). ``canary_losses`` is each canary's loss under the adapter the model
holds: the run scores the canaries with it, and ``audit --verify`` recomputes it from the
config and the final checkpoint (``securefed.run.canaries.rescore_input_canaries``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from securefed.config import ModelConfig
from securefed.model.adapters import AdapterModel
from securefed.model.option_rows import NOT_SCORED
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import choice_scores, encode_examples, trim_padding
from securefed.privacy.canaries import CanaryPlan, input_canary_records
from securefed.tasks import Task
from securefed.tasks.base import Example

INPUT_CANARY_TOKENS = 16  # random tokens per canary (fewer when model.max_length is shorter)


def canary_token_rows(
    plan: CanaryPlan, bundle: AdapterModel, task: Task, max_length: int
) -> TensorDataset:
    """``(input_ids, attention_mask, answer_ids, labels)`` of every input canary, as
    ``encode_examples`` lays out a record (right-padded to ``max_length``; multiple choice:
    ``option_rows``' rows)."""
    tok = bundle.tokenizer
    head, tail = _special_tokens(tok)
    length = min(INPUT_CANARY_TOKENS, max_length - len(head) - len(tail))
    if length < 1:
        raise ValueError(f"model.max_length {max_length} leaves no room for a canary's tokens")
    tokens, labels = input_canary_records(
        plan, vocab_size=tok.vocab_size, length=length, num_labels=bundle.num_labels
    )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    if bundle.per_option:
        if bundle.kind == "encoder":
            return _encoder_option_rows(tokens, labels, tok, task, (head, tail), max_length, pad)
        return _option_rows(tokens, labels, tok, task, (head, tail), max_length, pad)
    input_ids = torch.full((plan.count, max_length), pad, dtype=torch.long)  # [m, L]
    attention_mask = torch.zeros((plan.count, max_length), dtype=torch.long)
    for i, row in enumerate(tokens.tolist()):
        ids = head + row + tail
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
    # The task's answer ids do not depend on the text: those of a blank example of the task.
    blank = Example(text="", choices=tuple(task.label_names), label=0)
    answer_ids = encode_examples([blank], task, bundle, max_length).tensors[2]  # [1, C]
    return TensorDataset(
        input_ids,
        attention_mask,
        answer_ids.expand(plan.count, -1).clone(),
        torch.from_numpy(labels),
    )


def _option_rows(tokens, labels, tok, task, specials, max_length: int, pad: int) -> TensorDataset:
    """Multiple choice on a causal LM (``option_rows``' layout): canary i's row for option c is
    its random tokens followed by the option's name (``task.label_names[c]``: A, B, ...), which
    the LM scores; its label picks one name at random."""
    head, tail = specials
    names = [tok(f" {name}", add_special_tokens=False)["input_ids"] for name in task.label_names]
    m, c = len(tokens), len(names)
    input_ids = torch.full((m, c, max_length), pad, dtype=torch.long)  # [m, C, L]
    attention_mask = torch.zeros((m, c, max_length), dtype=torch.long)
    targets = torch.full((m, c, max_length), NOT_SCORED, dtype=torch.long)
    for i, row in enumerate(tokens.tolist()):
        for j, name in enumerate(names):
            ids = (head + row + name + tail)[-max_length:]  # the random tokens cut first
            start = len(ids) - len(tail) - len(name)
            input_ids[i, j, : len(ids)] = torch.tensor(ids)
            attention_mask[i, j, : len(ids)] = 1
            targets[i, j, start : start + len(name)] = torch.tensor(name)
    return TensorDataset(input_ids, attention_mask, targets, torch.from_numpy(labels))


def _encoder_option_rows(
    tokens, labels, tok, task, specials, max_length: int, pad: int
) -> TensorDataset:
    """Multiple choice on an encoder (``option_rows``' layout): canary i's 1 + C rows are its
    random tokens, then each option name (``task.label_names``: A, B, ...) alone; its label
    picks one name at random."""
    head, tail = specials
    names = [tok(name, add_special_tokens=False)["input_ids"] for name in task.label_names]
    m, r = len(tokens), 1 + len(names)
    input_ids = torch.full((m, r, max_length), pad, dtype=torch.long)  # [m, 1+C, L]
    attention_mask = torch.zeros((m, r, max_length), dtype=torch.long)
    for i, row in enumerate(tokens.tolist()):
        for j, text in enumerate([row, *names]):
            ids = head + text + tail
            input_ids[i, j, : len(ids)] = torch.tensor(ids)
            attention_mask[i, j, : len(ids)] = 1
    targets = torch.full_like(input_ids, NOT_SCORED)
    return TensorDataset(input_ids, attention_mask, targets, torch.from_numpy(labels))


def _special_tokens(tok) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own (BERT: [CLS], [SEP])."""
    bare = tok("a", add_special_tokens=False)["input_ids"]
    full = tok("a")["input_ids"]
    start = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:start], full[start + len(bare) :]


def input_canary_rows(
    plan: CanaryPlan, bundle: AdapterModel, task: Task, model_cfg: ModelConfig, batch_size: int
) -> tuple[AdapterModel, TensorDataset]:
    """``scorer_and_rows`` of the input canaries: what scores them, and every canary as it
    reads them (tokens, or its own cached prefix activations)."""
    rows = canary_token_rows(plan, bundle, task, model_cfg.max_length)
    return scorer_and_rows(bundle, rows, model_cfg.adapter_layers, batch_size)


@torch.no_grad()
def canary_losses(scorer: AdapterModel, rows: TensorDataset, batch_size: int) -> np.ndarray:
    """[m] float64: each row's cross-entropy under the adapter ``scorer`` holds (eval mode)."""
    was_training = scorer.model.training
    scorer.model.eval()
    losses: list[np.ndarray] = []
    try:
        for input_ids, attention_mask, answer_ids, labels in DataLoader(rows, batch_size):
            input_ids, attention_mask = trim_padding(input_ids, attention_mask)
            scores = choice_scores(scorer, input_ids, attention_mask, answer_ids)
            loss = F.cross_entropy(scores.float(), labels.to(scores.device), reduction="none")
            losses.append(loss.cpu().numpy().astype(np.float64))
    finally:
        scorer.model.train(was_training)
    return np.concatenate(losses)
