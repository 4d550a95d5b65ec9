"""Adapters on the top layers only, with the frozen prefix's activations computed once.

With ``model.adapter_layers: top-N`` the adapter sits on the last N transformer layers (and,
for encoders, the classification head). Everything below them (the embeddings and the first
L-N layers) is frozen and holds no adapter, so its output for an example is a deterministic
function of the frozen base weights and the example's tokens. We compute it once per example,
in eval mode (no dropout in the frozen prefix), and from then on every local step, every
baseline and every evaluation runs only the *suffix*: the top N layers and the head.

The suffix is a view of the PEFT model, not a copy: the containers on the path from the
PEFT wrapper to the layer stack are shallow copies whose child lists differ (the prefix
layers are left out, the embeddings are replaced by a pass-through), while every layer, the
head and every adapter parameter are the very same objects. Training the view trains the
model; parameter names, their order and so the adapter vector spec are unchanged. Under DP-SGD
Opacus hooks the modules that own trainable parameters, all of which are in the view, and
clips one per-sample gradient per example (the cached rows are one per example, too, or one
per option of a multiple-choice record, folded into the record's gradient by ``dp_sgd``).

Supported architectures are listed in ``SPLITS`` (each one is tested against the full
forward); any other backbone with ``top-N`` is refused with the key named.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from transformers import DynamicCache

from securefed.errors import ConfigError
from securefed.model.adapter_layers import top_layers
from securefed.model.adapters import AdapterModel
from securefed.model.option_rows import NOT_SCORED

# model_type: (module the suffix bypasses, given the cached activations, or None where the
# architecture itself skips its token embedding when handed ``inputs_embeds``; layer stack),
# as paths below the transformer trunk (``model.<base_model_prefix>``).
SPLITS: dict[str, tuple[str | None, str]] = {
    "bert": ("embeddings", "encoder.layer"),
    "roberta": ("embeddings", "encoder.layer"),
    "llama": (None, "layers"),
    "qwen2": (None, "layers"),
}


class _CachedActivations(nn.Module):
    """Stands in for the bypassed embeddings: returns the cached activations it is handed."""

    def forward(self, inputs_embeds: torch.Tensor, **_: object) -> torch.Tensor:
        return inputs_embeds


def _hf_model(peft_model: nn.Module) -> nn.Module:
    return peft_model.get_base_model()


def _trunk_path(peft_model: nn.Module) -> str:
    """Dotted path from the PEFT model to the transformer trunk (e.g. ``...model.bert``)."""
    hf = _hf_model(peft_model)
    prefix = hf.base_model_prefix
    for name, module in peft_model.named_modules():
        if module is getattr(hf, prefix, None):
            return name
    raise ConfigError(
        "model.adapter_layers", "top-N", f"a backbone with a '{prefix}' trunk (found none)"
    )


def _split_of(bundle: AdapterModel) -> tuple[str | None, str]:
    model_type = _hf_model(bundle.model).config.model_type
    if model_type not in SPLITS:
        raise ConfigError(
            "model.adapter_layers",
            f"top-N on {model_type}",
            f"'all', or a backbone of type {', '.join(sorted(SPLITS))}",
        )
    return SPLITS[model_type]


def _rebuilt(root: nn.Module, path: str, child: nn.Module) -> nn.Module:
    """A shallow copy of ``root`` with the module at ``path`` replaced by ``child``.

    Only the containers on the path are copied (each with its own child table); every other
    module, parameter and buffer is shared with ``root``.
    """
    head, _, rest = path.partition(".")
    clone = copy.copy(root)
    clone._modules = dict(root._modules)
    clone._modules[head] = _rebuilt(root._modules[head], rest, child) if rest else child
    return clone


def suffix_view(bundle: AdapterModel, top: int) -> AdapterModel:
    """The bundle whose model runs only the top ``top`` layers and the head, on activations
    given as ``inputs_embeds`` (shares every parameter with ``bundle.model``)."""
    bypassed, stack_path = _split_of(bundle)
    trunk = _trunk_path(bundle.model)
    stack = bundle.model.get_submodule(f"{trunk}.{stack_path}")
    kept = nn.ModuleList()
    first = len(stack) - top
    kept._modules = {k: m for k, m in stack._modules.items() if int(k) >= first}
    view = _rebuilt(bundle.model, f"{trunk}.{stack_path}", kept)
    if bypassed is not None:
        view = _rebuilt(view, f"{trunk}.{bypassed}", _CachedActivations())
    return dataclasses.replace(bundle, model=view)


def _prefix_modules(bundle: AdapterModel, top: int) -> Iterator[nn.Module]:
    bypassed, stack_path = _split_of(bundle)
    trunk = bundle.model.get_submodule(_trunk_path(bundle.model))
    stack = trunk.get_submodule(stack_path)
    yield from list(stack)[: len(stack) - top]
    if bypassed is not None:
        yield trunk.get_submodule(bypassed)


@torch.no_grad()
def prefix_activations(
    bundle: AdapterModel, data: TensorDataset, top: int, batch_size: int
) -> TensorDataset:
    """``(activations, attention_mask, answer_ids, labels)``: each example's hidden states
    entering the first adapted layer, computed once with the frozen prefix in eval mode.
    Records of one row per option ([N, C, L]) give [N, C, width, H] activations.

    Examples run in batches of similar length (each batch trimmed to its longest example),
    then rows are right-padded with zeros to the longest example overall (padding positions
    are masked out of attention and never read by the head); the mask is trimmed to match.
    """
    input_ids, attention_mask, answer_ids, labels = data.tensors
    if attention_mask.dim() == 3 and bundle.kind == "causal" and _prompts_shared(data):
        return _shared_prompt_activations(bundle, data, top)
    if attention_mask.dim() == 3:  # one row per option: cache the N * C rows, keep the C axis
        n, c = attention_mask.shape[:2]
        flat = TensorDataset(input_ids.flatten(0, 1), attention_mask.flatten(0, 1),
                             answer_ids.flatten(0, 1), labels.repeat_interleave(c))  # fmt: skip
        acts, mask, targets, _ = prefix_activations(bundle, flat, top, batch_size).tensors
        width = mask.shape[-1]
        return TensorDataset(
            acts.view(n, c, width, -1),
            mask.view(n, c, width),
            targets.view(n, c, -1)[..., :width],  # option targets lie inside the mask
            labels,
        )
    for module in _prefix_modules(bundle, top):
        if any(p.requires_grad for p in module.parameters()):
            raise ValueError(f"{type(module).__name__} below the top {top} layers is trainable")
    width = max(1, int(attention_mask.sum(dim=1).max()))
    trunk = _hf_model(bundle.model).get_submodule(_hf_model(bundle.model).base_model_prefix)
    stack = trunk.get_submodule(_split_of(bundle)[1])
    captured: list[torch.Tensor] = []

    def capture(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(hidden.detach())
        raise _PrefixDone

    first_adapted = stack[len(stack) - top]
    hook = first_adapted.register_forward_pre_hook(capture, with_kwargs=True)
    was_training = bundle.model.training
    bundle.model.eval()
    lengths = attention_mask.sum(dim=1)  # [N]
    by_length = torch.argsort(lengths, stable=True)
    activations: torch.Tensor | None = None  # [N, width, H]
    try:
        for batch in DataLoader(by_length, batch_size):
            trimmed = max(1, int(lengths[batch].max()))
            try:
                bundle.model(
                    input_ids=input_ids[batch, :trimmed],
                    attention_mask=attention_mask[batch, :trimmed],
                )
            except _PrefixDone:
                hidden = captured.pop()  # [B, trimmed, H]
            if activations is None:
                activations = hidden.new_zeros((len(lengths), width, hidden.shape[-1]))
            activations[batch, :trimmed] = hidden
    finally:
        hook.remove()
        bundle.model.train(was_training)
    assert activations is not None, "no examples to cache"
    mask = attention_mask[:, :width]
    activations *= mask[:, :, None].to(activations.dtype)  # padding carries nothing
    return TensorDataset(activations, mask, answer_ids, labels)


def _prompts_shared(data: TensorDataset) -> bool:
    """Whether every record's C rows hold the same tokens before their first option token."""
    input_ids, _, targets, _ = data.tensors
    starts = (targets != NOT_SCORED).int().argmax(dim=-1)  # [N, C] first option position
    for ids, start in zip(input_ids, starts, strict=True):
        p = int(start.min())
        if p == 0 or not bool((ids[:, :p] == ids[:1, :p]).all()):
            return False
    return True


@torch.no_grad()
def _shared_prompt_activations(bundle: AdapterModel, data: TensorDataset, top: int):
    """``prefix_activations`` of a causal LM's multiple-choice records: a record's C rows are
    one prompt followed by each option, and a causal layer's output at a position depends on
    the tokens up to it only, so the frozen prefix runs once over the prompt and then over the
    C options with the prompt's keys and values cached (C times fewer prompt tokens). The
    activations are those of running each whole row (``tests/test_option_rows``)."""
    input_ids, attention_mask, targets, labels = data.tensors  # [N, C, L] each but labels
    n, c, _ = attention_mask.shape
    width = max(1, int(attention_mask.sum(dim=-1).max()))
    stack = _hf_model(bundle.model).get_submodule(_hf_model(bundle.model).base_model_prefix)
    stack = stack.get_submodule(_split_of(bundle)[1])
    captured: list[torch.Tensor] = []

    def capture(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append((args[0] if args else kwargs["hidden_states"]).detach())
        raise _PrefixDone

    def prefix(**inputs: torch.Tensor) -> torch.Tensor:
        try:
            bundle.model(**inputs, use_cache=True)
        except _PrefixDone:
            return captured.pop()
        raise AssertionError("the capture hook did not fire")

    hook = stack[len(stack) - top].register_forward_pre_hook(capture, with_kwargs=True)
    was_training = bundle.model.training
    bundle.model.eval()
    starts = (targets != NOT_SCORED).int().argmax(dim=-1).min(dim=-1).values  # [N]
    activations: torch.Tensor | None = None  # [N, C, width, H]
    try:
        for i in range(n):
            p, end = int(starts[i]), int(attention_mask[i].sum(dim=-1).max())
            kv = DynamicCache()
            ids, mask = input_ids[i, :, :end], attention_mask[i, :, :end]  # [C, end]
            prompt = prefix(input_ids=ids[:1, :p], attention_mask=mask[:1, :p], past_key_values=kv)
            kv.batch_repeat_interleave(c)
            options = prefix(input_ids=ids[:, p:], attention_mask=mask, past_key_values=kv)
            if activations is None:
                activations = prompt.new_zeros((n, c, width, prompt.shape[-1]))
            activations[i, :, :p] = prompt
            activations[i, :, p:end] = options
    finally:
        hook.remove()
        bundle.model.train(was_training)
    assert activations is not None, "no examples to cache"
    mask = attention_mask[..., :width]
    activations *= mask[..., None].to(activations.dtype)  # padding carries nothing
    return TensorDataset(activations, mask, targets[..., :width], labels)


def scorer_and_rows(
    bundle: AdapterModel, rows: TensorDataset, adapter_layers: str, batch_size: int
) -> tuple[AdapterModel, TensorDataset]:
    """What trains and predicts, and the rows it reads: ``bundle`` and its token rows for
    ``all``; for ``top-N`` the suffix view and each example's cached prefix activations."""
    num_layers = _hf_model(bundle.model).config.num_hidden_layers
    top = top_layers(adapter_layers, num_layers)
    if top is None:
        return bundle, rows
    return suffix_view(bundle, top), prefix_activations(bundle, rows, top, batch_size)


class _PrefixDone(Exception):
    """Raised by the capture hook: the rest of the forward is not needed."""
