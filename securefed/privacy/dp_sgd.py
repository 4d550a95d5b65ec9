"""DP-SGD on a PEFT adapter with Opacus: one institution, one round.

securefed's only importer of Opacus's training machinery (it imports peft only to recognise
IA3 layers). Each step of a round:

1. Poisson sampling: every record joins the batch independently with probability
   q = min(1, B / N) (Opacus's Poisson sampler and collation; batches vary in size and may be
   empty). Never shuffled fixed-size batches: the accountant's Poisson analysis would not
   describe them.
2. Per-example gradients of the trainable (adapter) parameters, by Opacus hooks attached to
   the model itself (no wrapper). IA3 gets its own grad sampler (below): PEFT keeps IA3
   vectors in a ParameterDict that never runs forward, so Opacus would find no gradient.
3. Clip each example's gradient to L2 norm C, sum, add N(0, (sigma C)^2) per coordinate,
   divide by B, step (Opacus ``DPOptimizer``).

The ledger needs (sigma, q, steps): ``PrivateRound`` reports them, counting noised steps.

Canaries (``securefed.privacy.canaries``, for the empirical audit) join at two seams. Gradient
canaries: each step, every included canary of this institution is Poisson-sampled at the same
rate q from the same sampling generator, and the sampled canaries' gradient rows are appended
to the per-sample gradients after the one-row-per-example check and before clipping, so
clipping, noise and everything after treat them as records. Input canaries are records of
``dataset``; ``real_records`` keeps q at B / (real records), so the canaries neither change
the rate the ledger records nor show in it.

What the caller must keep (checked where a check is possible):
- the loss is the batch mean of per-example losses, one model row per example (checked each
  step: every per-sample gradient has exactly one row per example of the batch). A loss
  averaged over tokens of the whole batch would let one record change the others' weight;
- only adapter parameters require grad, and the optimizer holds exactly those (checked);
- every step uses one batch drawn from ``PrivateRound.loader`` (checked).

Randomness: by default the batch sampling and the noise come from ``secure_noise.AesCtrRandom``
(an AES-256-CTR keystream with a fresh key from ``os.urandom`` each round): Opacus's optimizer
and loader are kept, only ``add_noise`` and the sampler draw from it. ``noise_source="torch"``
keeps Opacus's own path: ``torch.Generator``s seeded with 64 bits from ``os.urandom`` (a
Mersenne Twister, not cryptographic). A generator pinned for tests seeds a test-only AES key
whose label says so. Neither path defends against floating-point attacks on Gaussian
sampling (Mironov 2012; Jin et al. 2022). Opacus's ``secure_mode`` (torch path only) draws from
torchcsprng and sums four Gaussians to blunt them, but torchcsprng has no release for torch
2.x (build it from source); without it ``secure_mode=True`` is refused rather than silently
downgraded.

After every step each trainable parameter must be finite and changed (Opacus issue 820: LoRA
weights silently corrupted under DP); otherwise the round stops with ``AdapterCorrupted``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
from opacus.grad_sample import GradSampleHooks, register_grad_sampler
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from peft.tuners.ia3.layer import IA3Layer
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from securefed.errors import AdapterCorrupted, ConfigError
from securefed.privacy.canaries import GRADIENT_NORM_FACTOR, CanaryPlan, canary_direction
from securefed.privacy.plan import DPPlan, LocalStats, NoiseSource
from securefed.privacy.secure_noise import AesCtrRandom

NOISE_SOURCE_TORCH = "torch Mersenne Twister seeded from os.urandom (not cryptographic)"
NOISE_SOURCE_TORCHCSPRNG = "torchcsprng /dev/urandom (Opacus secure_mode)"

_IA3_ALIAS_PREFIX = "securefed_dp_ia3_"


def sample_rate_for(num_records: int, batch_size: int) -> float:
    """Poisson sampling rate for an expected batch of ``batch_size`` from ``num_records``."""
    if num_records < 1 or batch_size < 1:
        raise ValueError(
            f"need num_records >= 1 and batch_size >= 1, got {num_records}, {batch_size}"
        )
    return min(1.0, batch_size / num_records)


class _BatchLog:
    """Size of the last batch the private loader produced; consumed by the next step."""

    def __init__(self) -> None:
        self.pending: int | None = None


class _RecordingCollate:
    def __init__(self, collate: Callable[[list[Any]], Any], log: _BatchLog) -> None:
        self.collate, self.log = collate, log

    def __call__(self, samples: list[Any]) -> Any:
        self.log.pending = len(samples)
        return self.collate(samples)


ExtraRows = Callable[[], dict[torch.Tensor, torch.Tensor]]


class _CheckedDPOptimizer(DPOptimizer):
    """Opacus's DPOptimizer that first checks one gradient row per example of a loader batch,
    then appends the rows of ``extra_rows`` (canaries; per parameter) before clipping, draws
    its noise from ``csprng`` when given, and checks every step left the adapter finite and
    changed (Opacus issue 820)."""

    def __init__(
        self,
        *args: Any,
        batch_log: _BatchLog,
        csprng: AesCtrRandom | None,
        param_names: dict[int, str],
        extra_rows: ExtraRows | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_log, self.csprng, self.param_names = batch_log, csprng, param_names
        self.extra_rows = extra_rows

    def clip_and_accumulate(self) -> None:
        examples, self.batch_log.pending = self.batch_log.pending, None
        if examples is None:
            raise RuntimeError("each DP-SGD step must use one batch drawn from the private loader")
        rows = {int(gs.shape[0]) for gs in self.grad_samples}
        if rows != {examples}:
            raise RuntimeError(
                f"per-sample gradients have {sorted(rows)} rows for a batch of {examples} examples:"
                " the model must keep one row per example, or clipping would bound each row"
                " rather than each record and the privacy accounting would be wrong"
            )
        if self.extra_rows is not None:
            rows = self.extra_rows()
            for p in self.params:
                p.grad_sample = torch.cat([p.grad_sample, rows[p].to(p.grad_sample)])
        super().clip_and_accumulate()

    def add_noise(self) -> None:
        """N(0, (sigma C)^2) per coordinate, from the CSPRNG (one keystream draw per step)."""
        if self.csprng is None:
            super().add_noise()
            return
        std = self.noise_multiplier * self.max_grad_norm
        sizes = [p.summed_grad.numel() for p in self.params]
        noise = torch.from_numpy(self.csprng.standard_normal(sum(sizes)) * std)  # (d,) float64
        for p, chunk in zip(self.params, torch.split(noise, sizes), strict=True):
            _check_processed_flag(p.summed_grad)
            summed = p.summed_grad
            p.grad = (summed + chunk.to(summed.device, summed.dtype).view_as(summed)).view_as(p)
            _mark_as_processed(p.summed_grad)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        before = [p.detach().clone() for p in self.params]
        loss = super().step(closure)
        if not self._is_last_step_skipped:
            check_step_moved_adapter(before, self.params, self.param_names)
        return loss


def check_step_moved_adapter(
    before: list[torch.Tensor], after: list[nn.Parameter], names: dict[int, str]
) -> None:
    """Raise ``AdapterCorrupted`` unless every parameter is finite and differs from ``before``.

    A noised step moves every trainable tensor (the noise alone does); one that stays put or
    turns non-finite was corrupted, e.g. by Opacus issue 820 (LoRA weights under DP).
    """
    for old, p in zip(before, after, strict=True):
        name = names.get(id(p), f"<unnamed {tuple(p.shape)}>")
        if not bool(torch.isfinite(p).all()):
            raise AdapterCorrupted(
                f"DP-SGD step left adapter parameter {name} non-finite (NaN or inf); "
                "stopping rather than training on corrupted weights (see Opacus issue 820)"
            )
        if torch.equal(old, p.detach()):
            raise AdapterCorrupted(
                f"DP-SGD step did not change adapter parameter {name}, although noise was "
                "added to it: the update was lost (see Opacus issue 820)"
            )


class _CsprngPoissonSampler(UniformWithReplacementSampler):
    """Opacus's Poisson sampler with each record's coin drawn from the CSPRNG."""

    def __init__(self, *, num_samples: int, sample_rate: float, csprng: AesCtrRandom) -> None:
        super().__init__(num_samples=num_samples, sample_rate=sample_rate)
        self.csprng = csprng

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            chosen = self.csprng.bernoulli(self.num_samples, self.sample_rate)  # (N,) bool
            yield chosen.nonzero()[0].tolist()


def poisson_loader(
    dataset: Dataset, sample_rate: float, sampler: UniformWithReplacementSampler
) -> DataLoader:
    """A loader of Poisson batches (Opacus ``DPDataLoader``'s collation, empty batches too)
    from ``sampler``: Opacus's own (torch generator) or the CSPRNG one."""
    first = dataset[0]
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=wrap_collate_with_empty(
            collate_fn=default_collate,
            batch_first=True,
            rand_on_empty=False,
            sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
            dtypes=[dtype_safe(x) for x in first],
        ),
    )


class GradientCanaryRows:
    """Per step: Poisson-sample this institution's included gradient canaries at rate q and
    return their rows (direction x GRADIENT_NORM_FACTOR x C), split per parameter.

    ``params``: the trainable parameters in adapter-vector order. DP-SGD appends the rows
    before clipping; a non-private loop adds ``rows.sum(0) / batch_rows`` to each ``p.grad``
    after ``backward`` (the batch-mean loss's scale), so DP-off runs carry the same canaries.
    """

    def __init__(
        self,
        plan: CanaryPlan,
        institution: int,
        params: list[torch.Tensor],
        sample_rate: float,
        max_grad_norm: float,
        generator: torch.Generator,
    ) -> None:
        if plan.kind != "gradient":
            raise ValueError(f"DP-SGD injects gradient canaries only, got {plan.kind!r}")
        self.plan, self.params, self.generator = plan, params, generator
        self.indices = plan.included_at(institution)
        self.sample_rate = sample_rate
        self.norm = GRADIENT_NORM_FACTOR * max_grad_norm
        self.dimension = sum(p.numel() for p in params)

    def __call__(self) -> dict[torch.Tensor, torch.Tensor]:
        drawn = torch.rand(len(self.indices), generator=self.generator) < self.sample_rate
        sampled = self.indices[drawn.numpy()]
        flat = np.zeros((len(sampled), self.dimension), dtype=np.float32)  # [k, d]
        for row, index in enumerate(sampled):
            flat[row] = self.norm * canary_direction(self.plan.seed, int(index), self.dimension)
        rows, offset = {}, 0
        for p in self.params:
            chunk = torch.from_numpy(flat[:, offset : offset + p.numel()])
            rows[p] = chunk.reshape(len(sampled), *p.shape)
            offset += p.numel()
        return rows


class PrivateRound:
    """What ``dp_training`` yields: the private optimizer and loader, and what the ledger needs."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: _CheckedDPOptimizer,
        loader: DataLoader,
        noise_multiplier: float,
        max_grad_norm: float,
        sample_rate: float,
        noise_source: str,
    ) -> None:
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.noise_multiplier, self.max_grad_norm = noise_multiplier, max_grad_norm
        self.sample_rate = sample_rate
        self.noise_source = noise_source  # label of the generator the noise and batches used
        self.steps = 0  # noised optimizer steps taken so far (Opacus's step hook counts them)

    def step_on_empty_batch(self) -> None:
        """A noise-only step for an empty Poisson batch (models cannot run on zero rows)."""
        for p in self.optimizer.params:
            p.grad_sample = p.new_zeros((0, *p.shape))
        self.optimizer.step()

    def _count_step(self, _optimizer: DPOptimizer) -> None:
        self.steps += 1


@contextmanager
def dp_training(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    batch_size: int,
    generator: torch.Generator | None = None,
    secure_mode: bool = False,
    canaries: tuple[CanaryPlan, int] | None = None,
    real_records: int | None = None,
    noise_scale_for_testing: float = 1.0,
    noise_source: NoiseSource = "aes_ctr",
) -> Iterator[PrivateRound]:
    """Make ``model`` train privately for one round; afterwards it is exactly as before.

    The model is not wrapped: Opacus's hooks are attached to it and removed on exit, so a
    fresh call next round stacks nothing. Sampling and noise come from ``noise_source``
    (module doc) keyed from OS entropy; ``generator`` (CPU) pins both for tests, and the
    round's ``noise_source`` label then says TEST ONLY. ``canaries`` = (plan,
    institution): that institution's included gradient canaries join every step (module
    docstring); ``real_records``: the count q is computed from (default ``len(dataset)``).
    ``noise_scale_for_testing`` is for the audit's own test only: the optimizer adds that
    fraction of the noise while the round still reports the full sigma (a broken
    implementation the empirical audit must catch). Usage::

        with dp_training(model, opt, data, noise_multiplier=s, max_grad_norm=c,
                         batch_size=b) as dp:
            for batch in dp.loader:          # Poisson batches
                dp.optimizer.zero_grad()
                loss_fn(model, batch).backward()
                dp.optimizer.step()
        ledger.record(noise_multiplier=dp.noise_multiplier, sample_rate=dp.sample_rate,
                      steps=dp.steps, round_index=r)
    """
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"noise_multiplier must be finite and > 0, got {noise_multiplier!r}")
    if not 0 <= noise_scale_for_testing <= 1:
        raise ValueError(
            f"noise_scale_for_testing must be in [0, 1], got {noise_scale_for_testing}"
        )
    trainable = [p for p in model.parameters() if p.requires_grad]  # adapter vector order
    _check_optimizer_holds_exactly(optimizer, trainable)
    records = len(dataset) if real_records is None else real_records
    sample_rate = sample_rate_for(records, batch_size)
    device = trainable[0].device
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    csprng: AesCtrRandom | None = None
    if noise_source == "aes_ctr":
        if secure_mode:
            raise ConfigError(
                "privacy.dp.secure_mode", True, "false with noise_source aes_ctr (a CSPRNG)"
            )
        csprng = _csprng(generator)
        sampling_rng = noise_rng = None
        sampler = _CsprngPoissonSampler(
            num_samples=len(dataset), sample_rate=sample_rate, csprng=csprng
        )
        label = csprng.label
    elif noise_source == "torch":
        sampling_rng, noise_rng = _generators(generator, secure_mode, device)
        sampler = UniformWithReplacementSampler(
            num_samples=len(dataset), sample_rate=sample_rate, generator=sampling_rng
        )
        label = NOISE_SOURCE_TORCHCSPRNG if secure_mode else NOISE_SOURCE_TORCH
        if generator is not None:
            label = f"TEST ONLY, NOT PRIVATE: {label} (pinned generator)"
    else:
        raise ConfigError("privacy.dp.noise_source", noise_source, "aes_ctr | torch")

    with ExitStack() as cleanup:  # unwinds in reverse: hooks, Opacus residue, IA3 aliases
        cleanup.enter_context(ia3_for_opacus(model))
        cleanup.callback(_remove_opacus_state, model)
        ModuleValidator.validate(model, strict=True)
        hooks = GradSampleHooks(model, batch_first=True, loss_reduction="mean", strict=True)
        cleanup.callback(hooks.cleanup)
        hooks.forbid_grad_accumulation()
        log = _BatchLog()
        loader = poisson_loader(dataset, sample_rate, sampler)
        loader.collate_fn = _RecordingCollate(loader.collate_fn, log)
        extra_rows = None
        if canaries is not None:
            plan, institution = canaries
            canary_rng = sampling_rng or torch.Generator().manual_seed(
                int.from_bytes(os.urandom(8), "little")
            )  # the canaries' own Poisson draws: OS entropy unless a test pins the generator
            extra_rows = GradientCanaryRows(
                plan, institution, trainable, sample_rate, max_grad_norm, canary_rng
            )
        dp_optimizer = _CheckedDPOptimizer(
            optimizer,
            noise_multiplier=noise_multiplier * noise_scale_for_testing,
            max_grad_norm=max_grad_norm,
            expected_batch_size=max(1, round(sample_rate * records)),
            loss_reduction="mean",
            generator=noise_rng,
            secure_mode=secure_mode,
            batch_log=log,
            extra_rows=extra_rows,
            csprng=csprng,
            param_names=names,
        )
        state = PrivateRound(
            model, dp_optimizer, loader, noise_multiplier, max_grad_norm, sample_rate, label
        )
        dp_optimizer.attach_step_hook(state._count_step)
        # Opacus needs only gradients w.r.t. module outputs; torch notes (once per layer whose
        # input is frozen) that a full backward hook then sees no input gradient.
        cleanup.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="Full backward hook is firing when")
        yield state


def train_private(
    bundle: Any,
    data: Dataset,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    batch_size: int,
    plan: DPPlan,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    on_step: Callable[[], None] | None = None,
    generator: torch.Generator | None = None,
    canaries: tuple[CanaryPlan, int] | None = None,
    real_records: int | None = None,
) -> Any:
    """The local loop of one round under DP-SGD: ``steps`` noised steps on Poisson batches.

    ``bundle.model`` is the PEFT model, ``loss_fn(bundle, batch)`` the batch-mean loss.
    ``canaries`` and ``real_records``: as in ``dp_training``. Returns
    ``LocalStats`` with the sample rate and noise multiplier used.
    Its ``mean_loss`` and ``examples`` are computed from the records without noise: keep them
    local (or out of anything the server sees).
    """
    losses: list[float] = []
    seen = taken = 0
    with dp_training(
        bundle.model,
        optimizer,
        data,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        batch_size=batch_size,
        generator=generator,
        secure_mode=plan.secure_mode,
        canaries=canaries,
        real_records=real_records,
        noise_source=plan.noise_source,
    ) as dp:
        while taken < steps:
            for batch in dp.loader:
                dp.optimizer.zero_grad(set_to_none=True)
                rows = int(batch[0].shape[0])
                if rows == 0:
                    dp.step_on_empty_batch()
                else:
                    loss = loss_fn(bundle, batch)
                    loss.backward()
                    dp.optimizer.step()
                    losses.append(float(loss.detach()))
                    seen += rows
                taken += 1
                if dp.steps != taken:
                    raise RuntimeError(f"DP-SGD step {taken} was not noised")
                if on_step is not None:
                    on_step()
                if taken == steps:
                    break
    mean_loss = sum(losses) / len(losses) if losses else math.nan
    return LocalStats(
        steps=dp.steps,
        examples=seen,
        mean_loss=mean_loss,
        sample_rate=dp.sample_rate,
        noise_multiplier=dp.noise_multiplier,
        noise_source=dp.noise_source,
    )


def _check_optimizer_holds_exactly(optimizer: torch.optim.Optimizer, trainable: list) -> None:
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not trainable or held != {id(p) for p in trainable}:
        raise ValueError(
            f"the optimizer must hold exactly the model's trainable (adapter) parameters: "
            f"it holds {len(held)} tensors, the model has {len(trainable)} trainable ones"
        )


def _csprng(pinned: torch.Generator | None) -> AesCtrRandom:
    if pinned is None:
        return AesCtrRandom.from_os_entropy()
    return AesCtrRandom.seeded_for_tests(int(torch.randint(0, 2**62, (1,), generator=pinned)))


def _entropy_generator(device: torch.device) -> torch.Generator:
    rng = torch.Generator(device=device)
    rng.manual_seed(int.from_bytes(os.urandom(8), "little"))
    return rng


def _generators(
    pinned: torch.Generator | None, secure_mode: bool, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """(sampling generator on CPU, noise generator on the parameters' device)."""
    if secure_mode:
        if pinned is not None:
            raise ValueError("secure_mode draws from torchcsprng; a pinned generator defeats it")
        try:
            import torchcsprng
        except ImportError:
            raise ConfigError(
                "privacy.dp.secure_mode",
                True,
                "requires torchcsprng, which has no release for torch 2.x: "
                "build pytorch/csprng from source, or set it to false",
            ) from None
        secure = torchcsprng.create_random_device_generator("/dev/urandom")
        return secure, secure
    warnings.warn(
        "DP-SGD without secure_mode and with noise_source torch: noise and sampling from "
        "torch generators seeded from OS entropy (not a CSPRNG; see threat_model.md)",
        stacklevel=4,  # the caller of dp_training
    )
    sampling = pinned if pinned is not None else _entropy_generator(torch.device("cpu"))
    if device.type == "cpu":
        return sampling, sampling
    if pinned is None:
        return sampling, _entropy_generator(device)
    noise = torch.Generator(device=device)
    noise.manual_seed(int(torch.randint(0, 2**62, (1,), generator=pinned)))
    return sampling, noise


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


def _remove_opacus_state(model: nn.Module) -> None:
    """Drop what Opacus leaves on parameters and modules after its own cleanup."""
    for p in model.parameters():
        if hasattr(p, "summed_grad"):
            del p.summed_grad
    for module in model.modules():
        for attr in ("activations", "max_batch_len"):
            if attr in module.__dict__:
                delattr(module, attr)
