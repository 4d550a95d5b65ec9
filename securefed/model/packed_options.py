"""A causal LM's multiple-choice record as ONE packed row: its prompt once, then its C options.

``option_rows`` lays a record out as C rows, each the whole prompt followed by one option, so
the prompt is computed C times. A causal layer's output at a position depends only on the
tokens it attends to and their positions, so the same scores come from one row holding the
prompt (positions 0..p-1) followed by every option (option c's k-th token at position p + k),
under an attention mask that lets each option token see the prompt and its own option's earlier
tokens only, never another option (a block-diagonal causal mask, as in packed-sequence
training). A record then costs ~p + C short options instead of C x p tokens through the trained
layers, and its gradient flows through the prompt's keys and values into every option's score.

One model row per record: DP-SGD's per-sample gradient of that row IS the record's gradient
(no rows to fold), so clipping bounds each record (``tests/test_option_rows.py`` checks the
scores, the per-record gradients and the clipped per-sample gradients against the C whole rows).

It applies where a record's options all start at the same position (one shared prompt); rows
whose prompts were cut differently (``model.max_length`` reached) are scored as whole rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from securefed.model.option_rows import NOT_SCORED

PROMPT, PAD = -1, -2  # segment ids of the packed row (an option's segment is its index c)


def shared_prompt_lengths(targets: torch.Tensor) -> torch.Tensor | None:
    """[B] each record's prompt length (where its options start), or None where some record's
    options start at different positions (rows that do not share one prompt)."""
    first = (targets != NOT_SCORED).int().argmax(dim=-1)  # [B, C]
    if bool((first != first[:, :1]).any()) or bool((first == 0).any()):
        return None
    return first[:, 0]


def _layout(prompt: torch.Tensor, lengths: torch.Tensor):
    """Where each packed token comes from: ``(option [B, T], source position [B, T],
    segment [B, T], position id [B, T])``, for prompts of ``prompt`` [B] tokens and rows of
    ``lengths`` [B, C] tokens (prompt + option)."""
    b, c = lengths.shape
    options = lengths - prompt[:, None]  # [B, C] option tokens
    width = int((prompt + options.sum(dim=1)).max())
    source_c = torch.zeros((b, width), dtype=torch.long)
    source_pos = torch.zeros((b, width), dtype=torch.long)
    segment = torch.full((b, width), PAD, dtype=torch.long)
    for i in range(b):
        p = int(prompt[i])
        segment[i, :p] = PROMPT
        source_pos[i, :p] = torch.arange(p)
        at = p
        for j in range(c):
            o = int(options[i, j])
            segment[i, at : at + o] = j
            source_c[i, at : at + o] = j
            source_pos[i, at : at + o] = torch.arange(p, p + o)
            at += o
    return source_c, source_pos, segment, source_pos.clone()


def _attention_bias(segment: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, T, T] additive mask: query i sees key j <= i of the prompt or of its own option;
    a padding query sees the first token only (a row with no key would give NaN)."""
    width = segment.shape[1]
    idx = torch.arange(width, device=segment.device)
    seg_q, seg_k = segment[:, :, None], segment[:, None, :]  # [B, T, 1], [B, 1, T]
    causal = idx[None, :, None] >= idx[None, None, :]  # [1, T, T]
    seen = causal & ((seg_k == PROMPT) | (seg_k == seg_q)) & (seg_q != PAD)
    seen |= (seg_q == PAD) & (idx[None, None, :] == 0)
    bias = torch.zeros(seen.shape, dtype=dtype, device=segment.device)
    bias = bias.masked_fill(~seen, torch.finfo(dtype).min)
    return bias[:, None]


def packed_option_scores(
    bundle, inputs, attention_mask, targets, prompt, reduce: str = "mean"
) -> torch.Tensor:
    """[B, C] mean log-likelihood of each option's tokens (``option_rows.option_scores``'
    causal scores), computed on one packed row per record. ``inputs``: token ids [B, C, L] or
    cached activations [B, C, L, H]; ``prompt``: ``shared_prompt_lengths(targets)``."""
    b, c, _ = attention_mask.shape
    layout = _layout(prompt.cpu(), attention_mask.sum(dim=-1).cpu())
    source_c, source_pos, segment, positions = (t.to(inputs.device) for t in layout)
    prompt = prompt.to(inputs.device)
    rows = torch.arange(b, device=inputs.device)[:, None]
    packed = inputs[rows, source_c, source_pos]  # [B, T] or [B, T, H]
    key = "inputs_embeds" if packed.is_floating_point() else "input_ids"
    hf = bundle.model.get_base_model()
    trunk = getattr(hf, hf.base_model_prefix)
    dtype = packed.dtype if packed.is_floating_point() else hf.get_input_embeddings().weight.dtype
    hidden = trunk(
        **{key: packed},
        attention_mask=_attention_bias(segment, dtype),
        position_ids=positions,
        use_cache=False,
    ).last_hidden_state  # [B, T, H]
    # Option c's k-th token is read at its own (k-1)-th token, the first at the prompt's last.
    record, at = (segment >= 0).nonzero(as_tuple=True)  # [M] each: every option token
    reader = torch.where(segment[record, at - 1] == segment[record, at], at - 1, prompt[record] - 1)
    option = segment[record, at]
    wanted = targets[record, option, source_pos[record, at]]  # [M] the token ids scored
    logits = hf.get_output_embeddings()(hidden[record, reader])  # [M, V]
    token_ll = F.log_softmax(logits.float(), dim=-1).gather(1, wanted[:, None])[:, 0]
    slot = record * c + option
    total = torch.zeros(b * c, device=hidden.device).index_add(0, slot, token_ll)
    count = torch.zeros(b * c, device=hidden.device).index_add(0, slot, torch.ones_like(token_ll))
    if reduce == "sum":
        return total.view(b, c)
    return (total / count.clamp(min=1)).view(b, c)
