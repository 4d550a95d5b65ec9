"""Multiple choice as one row per option: how a record of C options is laid out and scored.

A record is ``(input_ids [C, L], attention_mask [C, L], targets [C, L], label)``:

- an encoder reads each (question, option) pair as one sequence and its one-output head scores
  it (the SWAG formulation, as ``AutoModelForMultipleChoice`` does; ``targets`` are unused);
- a causal LM reads each row as the prompt (which lists the options; in the model's chat
  template where it has one, ``prompts``) followed by that option's own text, and scores the
  option by the mean log-likelihood of its tokens (``targets`` holds the option's token ids at
  their positions, -1 elsewhere). Mean rather than sum: the options are names of different
  token lengths, and a summed log-likelihood prefers the shorter name before any training
  (lm-evaluation-harness's ``acc_norm`` normalises by length for the same reason; we divide by
  tokens, the unit the model scores).

The C rows of a batch of B records run through the model as B * C rows, and the scores come
back as [B, C]. The loss of record i depends on its own C rows only, so its gradient is the sum
of their per-row gradients: DP-SGD folds the C rows back into one per-sample gradient before
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


def encode_option_rows(examples: Sequence, task, bundle, max_length: int) -> TensorDataset:
    """``(input_ids [N, C, L], attention_mask [N, C, L], targets [N, C, L], labels [N])``."""
    tok = bundle.tokenizer
    choices = {len(ex.choices) for ex in examples}
    if len(choices) != 1:
        raise DataError(f"multiple-choice records need one number of options, got {choices}")
    (c,) = choices
    n = len(examples)
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)  # [N]
    if bundle.kind == "encoder":
        pairs = [pair for ex in examples for pair in task.encoder_pairs(ex)]
        enc = tok(
            [q for q, _ in pairs],
            [o for _, o in pairs],
            max_length=max_length,
            truncation="only_first",
            padding="max_length",
            return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]  # [N*C, L]
        targets = torch.full_like(ids, NOT_SCORED)
        return TensorDataset(
            ids.view(n, c, -1), mask.view(n, c, -1), targets.view(n, c, -1), labels
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
    """C for records laid out one row per option, 1 for one-row records."""
    mask = data[0][1]
    return int(mask.shape[0]) if mask.dim() == 2 else 1


def option_scores(bundle, inputs, attention_mask, targets) -> torch.Tensor:
    """[B, C] scores of records laid out one row per option.

    ``inputs`` are token ids [B, C, L] or cached prefix activations [B, C, L, H]."""
    b, c, width = attention_mask.shape
    rows = inputs.flatten(0, 1)  # [B*C, L] or [B*C, L, H]
    mask = attention_mask.flatten(0, 1)  # [B*C, L]
    key = "inputs_embeds" if rows.is_floating_point() else "input_ids"
    if bundle.kind == "encoder":
        logits = bundle.model(**{key: rows, "attention_mask": mask}).logits  # [B*C, 1]
        return logits.view(b, c)
    hf = bundle.model.get_base_model()
    trunk = getattr(hf, hf.base_model_prefix)
    hidden = trunk(**{key: rows, "attention_mask": mask}).last_hidden_state  # [B*C, L, H]
    wanted = targets.flatten(0, 1)[:, :width]  # [B*C, L]
    scored = wanted[:, 1:] != NOT_SCORED  # [B*C, L-1]: token t+1 is read at position t
    row, pos = scored.nonzero(as_tuple=True)  # [M] each
    # Only the option positions go through the LM head ([M, V], not [B*C, L, V]).
    logits = hf.get_output_embeddings()(hidden[row, pos])  # [M, V]
    token_ll = F.log_softmax(logits.float(), dim=-1).gather(1, wanted[row, pos + 1][:, None])
    total = torch.zeros(b * c, device=hidden.device).index_add(0, row, token_ll[:, 0])
    return (total / scored.sum(dim=1).clamp(min=1)).view(b, c)
