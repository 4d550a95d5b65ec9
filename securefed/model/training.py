"""Encoding examples for a backbone, the local training loop, and evaluation.

Classification records are one row (see ``adapters``): encoders return C logits from their
head; causal LMs the log-likelihood of each of the C answer tokens after the prompt. Multiple-
choice records are one row per option (``option_rows``), scored one score per row.
Local training is plain AdamW on the adapter, or DP-SGD through ``securefed.privacy.dp_sgd``
when a ``DPStep`` plan is given; either can carry FedProx's proximal term
(``add_proximal_term``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from securefed.errors import DataError
from securefed.model.adapters import AdapterModel, trainable_parameters
from securefed.model.carried_rows import CarriedRows, RecordLoss
from securefed.model.option_rows import encode_option_rows, option_scores, rows_per_record
from securefed.model.packed_options import packed_option_scores, shared_prompt_lengths
from securefed.model.prompts import continuation, prompt_text, special_tokens
from securefed.privacy.canary_trace import CarriedCanaries
from securefed.privacy.dp_canary_rows import GradientCanaryRows
from securefed.privacy.dp_optimizers import make_dp_optimizer
from securefed.privacy.dp_sgd import train_private
from securefed.privacy.plan import DPPlan, LocalStats


def encode_examples(
    examples: Sequence, task, bundle: AdapterModel, max_length: int
) -> TensorDataset:
    """Tokenize every example once: ``(input_ids, attention_mask, answer_ids, labels)``.

    ``answer_ids`` [N, C] holds the first token of each answer continuation (causal LMs only;
    zeros for encoders, whose head has the C outputs itself). Multiple choice
    (``bundle.per_option``): one row per option, laid out by ``option_rows``.
    """
    if bundle.per_option:
        return encode_option_rows(examples, task, bundle, max_length)
    tok = bundle.tokenizer
    # An encoder reads the bare sentence where the task has one (its head replaces the
    # instruction); multiple choice keeps the prompt, whose lettered options the head picks.
    as_text = getattr(task, "encoder_text", None) if bundle.kind == "encoder" else None
    prompts = [as_text(ex) if as_text else task.prompt(ex) for ex in examples]
    specials = True
    if bundle.kind == "causal":
        tok.padding_side, tok.truncation_side = "right", "left"
        prompts, specials = [prompt_text(tok, p) for p in prompts], special_tokens(tok)
    enc = tok(
        prompts,
        max_length=max_length,
        truncation=True,
        padding="max_length",
        return_tensors="pt",
        add_special_tokens=specials,
    )
    labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)  # [N]
    num_choices = bundle.num_labels
    answer_ids = torch.zeros((len(examples), num_choices), dtype=torch.long)  # [N, C]
    if bundle.kind == "causal":
        cache: dict[str, int] = {}
        for i, ex in enumerate(examples):
            texts = [continuation(tok, t) for t in task.answer_texts(ex)]
            for j, text in enumerate(texts):
                if text not in cache:
                    ids = tok(text, add_special_tokens=False)["input_ids"]
                    if not ids:
                        raise DataError(f"answer {text!r} tokenizes to nothing")
                    cache[text] = ids[0]
                answer_ids[i, j] = cache[text]
            if len(set(answer_ids[i].tolist())) != len(texts):
                raise DataError(
                    f"answers {texts} share a first token with this tokenizer; "
                    "use letter answers or another backbone"
                )
    return TensorDataset(enc["input_ids"], enc["attention_mask"], answer_ids, labels)


def choice_scores(bundle: AdapterModel, input_ids, attention_mask, answer_ids) -> torch.Tensor:
    """[B, C] scores: head logits (encoder) or answer-token log-likelihoods (causal LM).

    ``input_ids`` [B, L] are token ids, or [B, L, H] float activations of the frozen prefix
    (``securefed.prefix_cache``), which a top-N suffix view takes as ``inputs_embeds``;
    records of one row per option carry a C axis after B (``option_rows.option_scores``).
    """
    if attention_mask.dim() == 3:
        prompt = shared_prompt_lengths(answer_ids) if bundle.kind == "causal" else None
        if prompt is not None:  # each record's prompt once, then its options (one row)
            return packed_option_scores(bundle, input_ids, attention_mask, answer_ids, prompt)
        return option_scores(bundle, input_ids, attention_mask, answer_ids)
    key = "inputs_embeds" if input_ids.is_floating_point() else "input_ids"
    out = bundle.model(**{key: input_ids, "attention_mask": attention_mask})
    if bundle.kind == "encoder":
        return out.logits
    logits = out.logits  # [B, L, V]
    last = attention_mask.sum(dim=1) - 1  # [B] index of the last prompt token
    next_token = logits[torch.arange(logits.shape[0]), last]  # [B, V]
    return F.log_softmax(next_token.float(), dim=-1).gather(1, answer_ids)  # [B, C]


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Drop the padding columns no row of this batch uses (rows are right-padded to
    ``max_length`` once at encoding; most batches are far shorter). The sequence axis is the
    mask's last: [B, L] or [B, C, L]; activations carry a hidden axis after it."""
    width = max(1, int(attention_mask.sum(dim=-1).max()))
    if input_ids.is_floating_point():
        return input_ids[..., :width, :], attention_mask[..., :width]
    return input_ids[..., :width], attention_mask[..., :width]


def batch_loss(bundle: AdapterModel, batch) -> torch.Tensor:
    input_ids, attention_mask, answer_ids, labels = batch
    input_ids, attention_mask = trim_padding(input_ids, attention_mask)
    scores = choice_scores(bundle, input_ids, attention_mask, answer_ids)
    return F.cross_entropy(scores.float(), labels)


def example_losses(bundle: AdapterModel, batch) -> torch.Tensor:
    """[B] each example's loss (``batch_loss`` is their mean)."""
    input_ids, attention_mask, answer_ids, labels = batch
    input_ids, attention_mask = trim_padding(input_ids, attention_mask)
    scores = choice_scores(bundle, input_ids, attention_mask, answer_ids)
    return F.cross_entropy(scores.float(), labels.to(scores.device), reduction="none")


def steps_for(
    num_examples: int, batch_size: int, local_epochs: float, local_steps: int | None
) -> int:
    """Local optimizer steps per round: fixed, or enough for ``local_epochs`` passes."""
    if local_steps is not None:
        return local_steps
    return max(1, math.ceil(local_epochs * num_examples / batch_size))


def add_proximal_term(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], mu: float
) -> None:
    """FedProx (Li et al., MLSys 2020): the gradient of (mu/2) ||w - w_start||^2 added to each
    step's gradient, ``w_start`` the global adapter the round began from.

    A step pre-hook on ``optimizer``: under DP-SGD that is the optimizer Opacus wraps, whose
    step runs after per-sample clipping and noise, so the proximal gradient is added outside
    both. It depends on no record (only on the current parameters, already a DP output, and
    on the global adapter the client was sent): post-processing, with no effect on the
    sensitivity or the privacy accounting."""
    anchor = [p.detach().clone() for p in params]

    def add(_optimizer: torch.optim.Optimizer, _args: tuple, _kwargs: dict) -> None:
        with torch.no_grad():
            for p, start in zip(params, anchor, strict=True):
                if p.grad is not None:
                    p.grad.add_(p - start, alpha=mu)

    optimizer.register_step_pre_hook(add)


def decay_learning_rate(
    optimizer: torch.optim.Optimizer, span: tuple[float, float], steps: int
) -> None:
    """A linear schedule over ``steps`` steps: the k-th step (from 0) trains at the rate times
    ``start + (end - start) * k / steps``, ``span = (start, end)`` the fractions of the rate
    at this call's beginning and end (a federated round's slice of the whole run's decay).

    A step pre-hook, like ``add_proximal_term``: under DP-SGD it scales the step the noised
    gradient takes, reading no record (post-processing, no effect on the accounting)."""
    start, end = span
    bases = [group["lr"] for group in optimizer.param_groups]
    taken = 0

    def scale(_optimizer: torch.optim.Optimizer, _args: tuple, _kwargs: dict) -> None:
        nonlocal taken
        factor = start + (end - start) * taken / steps
        for group, base in zip(optimizer.param_groups, bases, strict=True):
            group["lr"] = base * factor
        taken += 1

    optimizer.register_step_pre_hook(scale)


def train_local(
    bundle: AdapterModel,
    data: Subset | TensorDataset,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
    dp: DPPlan | None = None,
    on_step: Callable[[], None] | None = None,
    canaries: CarriedCanaries | None = None,
    canary_clip_norm: float = 1.0,
    input_canaries: Dataset | None = None,
    proximal_mu: float = 0.0,
    lr_span: tuple[float, float] | None = None,
) -> LocalStats:
    """Train the adapter in place for ``steps`` optimizer steps on ``data``.

    Without DP: uniformly shuffled mini-batches (seeded by ``generator``). With ``dp`` (a
    ``DPPlan``): Opacus DP-SGD with Poisson sampling. ``canaries`` (plan, institution, trace):
    that institution's included gradient canaries join its steps (``dp_canary_rows``): under
    DP Poisson-sampled at q = B / len(data) and appended before clipping, without DP once an
    epoch each, as the shuffled records are, added unclipped to the batch-mean gradient (norm
    ``GRADIENT_NORM_FACTOR`` x ``canary_clip_norm``).
    They are not records of ``data``: no count or loss reported here includes them.
    ``input_canaries``: this institution's included input canaries, which join ``data`` as
    records (``carried_rows``): shuffled or Poisson-sampled with them, at q = B / len(data),
    and left out of the reported ``examples`` and ``mean_loss``. ``proximal_mu`` > 0:
    FedProx's proximal term towards the adapter training starts from (``add_proximal_term``).
    ``lr_span`` (start, end): the rate decays linearly between these fractions of it over the
    ``steps`` (``decay_learning_rate``); None: constant.
    """
    bundle.model.train()
    # Dropout inside the backbone draws from torch's global RNG: seed it from this client's
    # generator so a client's update does not depend on who trained before it (or on resume).
    torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    records, loss_fn, tally = len(data), batch_loss, None
    if input_canaries is not None:
        data, loss_fn = CarriedRows(data, input_canaries), RecordLoss(example_losses)
        tally = loss_fn
    trainable = [p for _, p in trainable_parameters(bundle.model)]
    if dp is not None:
        optimizer = make_dp_optimizer(
            trainable,
            dp.optimizer,
            lr=dp.lr if dp.lr is not None else lr,
            weight_decay=weight_decay,
            momentum=dp.momentum,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            expected_batch=min(batch_size, records),
        )
    else:
        optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    if proximal_mu:
        add_proximal_term(optimizer, trainable, proximal_mu)
    if lr_span is not None:
        decay_learning_rate(optimizer, lr_span, steps)
    if dp is not None:
        stats = train_private(
            bundle,
            data,
            optimizer,
            steps=steps,
            batch_size=batch_size,
            plan=dp,
            loss_fn=loss_fn,
            on_step=on_step,
            canaries=canaries,
            real_records=records,
            rows_per_record=rows_per_record(data),
        )
        return stats if tally is None else _records_only(stats, tally)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)
    canary_rows = None
    if canaries is not None:
        canary_rows = GradientCanaryRows(
            canaries,
            trainable,
            min(1.0, batch_size / records),
            canary_clip_norm,
            torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little")),
            epoch_steps=len(loader),
        )
    losses: list[float] = []
    seen = 0
    while len(losses) < steps:
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(bundle, batch)
            loss.backward()
            if canary_rows is not None:
                rows = int(batch[0].shape[0])
                canary_rows.note_batch_records([p.grad for p in canary_rows.params], rows)
                for p, canary in canary_rows().items():
                    p.grad += canary.to(p.grad).sum(0) / rows  # the batch mean's scale
                canary_rows.note_released([p.grad for p in canary_rows.params], rows)
            optimizer.step()
            losses.append(float(loss.detach()))
            seen += int(batch[0].shape[0])
            if on_step is not None:
                on_step()
            if len(losses) == steps:
                break
    stats = LocalStats(steps=steps, examples=seen, mean_loss=float(np.mean(losses)))
    return stats if tally is None else _records_only(stats, tally)


def _records_only(stats: LocalStats, tally: RecordLoss) -> LocalStats:
    """``stats`` with the records' count and mean loss (``RecordLoss``), canaries left out."""
    return dataclasses.replace(stats, examples=tally.records, mean_loss=tally.mean)


@torch.no_grad()
def predict(bundle: AdapterModel, data: Subset | TensorDataset, batch_size: int) -> np.ndarray:
    """Predicted choice index per example, in dataset order."""
    bundle.model.eval()
    preds: list[np.ndarray] = []
    for input_ids, attention_mask, answer_ids, _ in DataLoader(data, batch_size=batch_size):
        input_ids, attention_mask = trim_padding(input_ids, attention_mask)
        scores = choice_scores(bundle, input_ids, attention_mask, answer_ids)
        preds.append(scores.argmax(dim=-1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def labels_of(data: Subset | TensorDataset) -> np.ndarray:
    if isinstance(data, Subset):
        return data.dataset.tensors[3][data.indices].numpy()
    return data.tensors[3].numpy()
