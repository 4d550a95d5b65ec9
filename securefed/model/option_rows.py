"""Multiple choice as rows of the model: how a record of C options is laid out and scored.

A record is ``(input_ids [R, L], attention_mask [R, L], targets [R, L], label)``:

- an encoder reads R = 1 + C rows, the question alone and then each option alone, and scores
  option c by the cosine of the mean-pooled embeddings of the question and the option, times
  ``SIMILARITY_SCALE`` (``targets`` are unused). That is how a sentence-embedding model such as
  all-MiniLM-L6-v2 was trained to be used (mean pooling, texts that match close under cosine),
  so its scores carry meaning before any training and the LoRA gradient reaches the adapter
  from the first step. A one-output head over (question, option) pairs (the SWAG formulation)
  was tried first and stayed at chance on ``synthetic_medqa`` for 200 steps: a random head on
  a zero-initialised adapter starts on a plateau (measured: docs/llm.md);
- a causal LM reads R = C rows, each the prompt (which lists the options; in the model's chat
  template where it has one, ``prompts``) followed by that option's own text, and scores the
  option by the mean log-likelihood of its tokens (``targets`` holds the option's token ids at
  their positions, -1 elsewhere). Mean rather than sum: the options are names of different
  token lengths, and a summed log-likelihood prefers the shorter name before any training
  (lm-evaluation-harness's ``acc_norm`` normalises by length for the same reason; we divide by
  tokens, the unit the model scores).

The R rows of a batch of B records run through the model as B * R rows, and the scores come
back as [B, C]. The loss of record i depends on its own R rows only, so its gradient is the sum
of their per-row gradients: DP-SGD folds the R rows back into one per-sample gradient before
clipping (``privacy.dp_sgd``, ``rows_per_record``), and clips per record.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from securefed.errors import DataError
from securefed.model.prompts import continuation, prompt_text, special_tokens

NOT_SCORED = -1  # a ``targets`` position that is not an option token
# Encoder scores are SIMILARITY_SCALE x cosine: the inverse temperature of sentence-transformers'
# ranking loss (MultipleNegativesRankingLoss, scale 20), with which such models are trained.
SIMILARITY_SCALE = 20.0


def encode_option_rows(examples: Sequence, task, bundle, max_length: int) -> TensorDataset:
    """``(input_ids [N, R, L], attention_mask [N, R, L], targets [N, R, L], labels [N])``:
    R = 1 + C rows (the question, then each option) for an encoder, C for a causal LM."""
    tok = bundle.tokenizer
    choices = {len(ex.choices) for ex in examples}
    if len(choices) != 1:
        raise DataError(f"multiple-choice records need one number of options, got {choices}")
    (c,) = choices
    n = len(examples)
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)  # [N]
    if bundle.kind == "encoder":
        texts = [text for ex in examples for text in task.encoder_rows(ex)]
        enc = tok(
            texts, max_length=max_length, truncation=True, padding="max_length", return_tensors="pt"
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]  # [N*(1+C), L]
        targets = torch.full_like(ids, NOT_SCORED)
        return TensorDataset(
            ids.view(n, 1 + c, -1), mask.view(n, 1 + c, -1), targets.view(n, 1 + c, -1), labels
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((n, c, max_length), pad, dtype=torch.long)
    mask = torch.zeros((n, c, max_length), dtype=torch.long)
    targets = torch.full((n, c, max_length), NOT_SCORED, dtype=torch.long)
    specials = special_tokens(tok)
    for i, ex in enumerate(examples):
        prompt = tok(prompt_text(tok, task.prompt(ex)), add_special_tokens=specials)["input_ids"]
        for j, text in enumerate(task.option_texts(ex)):
            option = tok(continuation(tok, text), add_special_tokens=False)["input_ids"]
            if not option or len(option) >= max_length:
                raise DataError(
                    f"option {text!r} is {len(option)} tokens; model.max_length {max_length} "
                    "must leave room for at least one prompt token before it"
                )
            row = (prompt + option)[-max_length:]  # the prompt is cut from the left
            start = len(row) - len(option)
            ids[i, j, : len(row)] = torch.tensor(row)
            mask[i, j, : len(row)] = 1
            targets[i, j, start : len(row)] = torch.tensor(option)
    return TensorDataset(ids, mask, targets, labels)


def rows_per_record(data: Dataset) -> int:
    """R for multiple-choice records (``encode_option_rows``), 1 for one-row records."""
    mask = data[0][1]
    return int(mask.shape[0]) if mask.dim() == 2 else 1


def option_scores(bundle, inputs, attention_mask, targets) -> torch.Tensor:
    """[B, C] scores of multiple-choice records (``encode_option_rows``' layout).

    ``inputs`` are token ids [B, R, L] or cached prefix activations [B, R, L, H]."""
    b, r, width = attention_mask.shape  # R: 1 + C rows (encoder) or C (causal LM)
    rows = inputs.flatten(0, 1)  # [B*R, L] or [B*R, L, H]
    mask = attention_mask.flatten(0, 1)  # [B*R, L]
    key = "inputs_embeds" if rows.is_floating_point() else "input_ids"
    hf = bundle.model.get_base_model()
    trunk = getattr(hf, hf.base_model_prefix)
    hidden = trunk(**{key: rows, "attention_mask": mask}).last_hidden_state  # [B*R, L, H]
    if bundle.kind == "encoder":
        weights = mask[..., None].to(hidden.dtype)  # [B*R, L, 1]
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)  # [B*R, H]
        emb = F.normalize(pooled.float(), dim=-1).view(b, r, -1)  # [B, 1+C, H]
        return SIMILARITY_SCALE * (emb[:, 1:] * emb[:, :1]).sum(-1)  # [B, C]
    wanted = targets.flatten(0, 1)[:, :width]  # [B*R, L]
    scored = wanted[:, 1:] != NOT_SCORED  # [B*R, L-1]: token t+1 is read at position t
    row, pos = scored.nonzero(as_tuple=True)  # [M] each
    # Only the option positions go through the LM head ([M, V], not [B*R, L, V]).
    logits = hf.get_output_embeddings()(hidden[row, pos])  # [M, V]
    token_ll = F.log_softmax(logits.float(), dim=-1).gather(1, wanted[row, pos + 1][:, None])
    total = torch.zeros(b * r, device=hidden.device).index_add(0, row, token_ll[:, 0])
    return (total / scored.sum(dim=1).clamp(min=1)).view(b, r)
