"""Per-example gradients of PEFT IA3 vectors for Opacus: PEFT keeps them in a ParameterDict
that never runs forward, so Opacus's hooks would find no gradient. Torch, Opacus and peft.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from opacus.grad_sample import register_grad_sampler
from peft.tuners.ia3.layer import IA3Layer
from torch import nn

_IA3_ALIAS_PREFIX = "securefed_dp_ia3_"


@contextmanager
def ia3_for_opacus(model: nn.Module) -> Iterator[None]:
    """Let Opacus (any grad_sample_mode) compute per-example gradients of PEFT IA3 vectors.

    Opacus hooks the modules that own trainable parameters directly; PEFT's IA3 vectors are
    owned by a ParameterDict that never runs forward. Inside this block each trainable vector
    is also registered on its IA3 layer (the same Parameter), so Opacus hooks the layer, whose
    grad sampler (``_ia3_grad_sample``) is registered too. On exit the extra registration is
    removed, so the adapter's parameter names and order are unchanged outside a round.
    """
    exposed: list[tuple[nn.Module, str]] = []
    try:
        for module in model.modules():
            if not isinstance(module, IA3Layer):
                continue
            for name, vector in module.ia3_l.items():
                if not vector.requires_grad:
                    continue
                ff = module.is_feedforward
                if tuple(vector.shape) != (
                    (1, module.in_features) if ff else (module.out_features, 1)
                ):
                    raise NotImplementedError(
                        f"DP-SGD supports IA3 on linear layers only, not {type(module).__name__}"
                    )
                register_grad_sampler(type(module))(_ia3_grad_sample)
                module.register_parameter(_IA3_ALIAS_PREFIX + name, vector)
                exposed.append((module, _IA3_ALIAS_PREFIX + name))
        yield
    finally:
        for module, alias in exposed:
            del module._parameters[alias]


def _ia3_grad_sample(
    layer: IA3Layer, activations: list[torch.Tensor], backprops: torch.Tensor
) -> dict[nn.Parameter, torch.Tensor]:
    """Per-example gradients of an IA3 layer's trainable vectors.

    IA3 scales the base layer's input (feedforward: y = base(x * l)) or output (y = base(x) * l)
    by l, the product of the active adapters' vectors. We give each example its own copy of a
    trainable vector, redo the layer on the captured input, and let autograd return the
    gradient of every copy at once: one extra forward of the (frozen) base layer, exact by
    construction for any base layer (nn.Linear, 4-bit, 8-bit).
    """
    x = activations[0]  # [n, ..., in_features]
    n = x.shape[0]
    active = [a for a in layer.active_adapters if a in layer.ia3_l]
    grads: dict[nn.Parameter, torch.Tensor] = {}
    for name in active:
        vector = layer.ia3_l[name]
        if not vector.requires_grad:
            continue
        others = torch.ones_like(vector.detach().flatten())
        for other in active:
            if other != name:
                others = others * layer.ia3_l[other].detach().flatten()
        copies = vector.detach().flatten().expand(n, -1).clone().requires_grad_(True)  # [n, k]
        with torch.enable_grad():  # backward hooks run with grad mode off
            scale = (copies * others).view(n, *([1] * (x.dim() - 2)), -1)  # [n, 1.., k]
            if layer.is_feedforward:
                out = layer.base_layer(x.to(scale.dtype) * scale)
            else:
                out = layer.base_layer(x) * scale
            (grad,) = torch.autograd.grad(out, copies, grad_outputs=backprops.to(out.dtype))
        grads[vector] = grad.view(n, *vector.shape)
    return grads
