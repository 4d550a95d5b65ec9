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

Gradient canaries (``dp_canary_rows``, for the empirical audit) join the per-sample gradients
after the one-row-per-example check and before clipping; input canaries are records of
``dataset``, and ``real_records`` keeps q at B / (real records).

What the caller must keep (checked where a check is possible):
- the loss is the batch mean of per-example losses, one model row per example, or
  ``rows_per_record`` consecutive rows per example that the optimizer folds into one (checked
  each step: every per-sample gradient has exactly one row per example of the batch). A loss
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
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from opacus.grad_sample import GradSampleHooks
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from securefed.errors import ConfigError
from securefed.privacy.canary_trace import CarriedCanaries
from securefed.privacy.dp_canary_rows import GradientCanaryRows
from securefed.privacy.dp_optimizers import check_step_moved_adapter
from securefed.privacy.dp_sampling import (
    NOISE_SOURCE_TORCH,
    NOISE_SOURCE_TORCHCSPRNG,
    CsprngPoissonSampler,
    csprng_for,
    poisson_loader,
    sample_rate_for,
    torch_generators,
)
from securefed.privacy.opacus_ia3 import ia3_for_opacus
from securefed.privacy.plan import DPPlan, LocalStats, NoiseSource
from securefed.privacy.secure_noise import AesCtrRandom


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


class _CheckedDPOptimizer(DPOptimizer):
    """Opacus's DPOptimizer that first checks one gradient row per example of a loader batch,
    then appends the rows of ``extra_rows`` (canaries; per parameter) before clipping (noting
    the records' part and the released gradient in their trace), draws its noise from
    ``csprng`` when given, and checks every step left the adapter finite and changed (Opacus
    issue 820)."""

    def __init__(
        self,
        *args: Any,
        batch_log: _BatchLog,
        csprng: AesCtrRandom | None,
        param_names: dict[int, str],
        extra_rows: GradientCanaryRows | None = None,
        rows_per_record: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_log, self.csprng, self.param_names = batch_log, csprng, param_names
        self.extra_rows, self.rows_per_record = extra_rows, rows_per_record

    def clip_and_accumulate(self) -> None:
        examples, self.batch_log.pending = self.batch_log.pending, None
        if examples is None:
            raise RuntimeError("each DP-SGD step must use one batch drawn from the private loader")
        rows = {int(gs.shape[0]) for gs in self.grad_samples}
        if (k := self.rows_per_record) > 1 and rows == {examples * k}:
            # A record of k model rows (multiple choice: one per option, consecutive): its
            # gradient is the sum of its rows' gradients. Opacus scaled each row by the
            # B*k rows it saw ("mean" reduction), the loss averages over B records: divide by k.
            for p in self.params:  # grad_sample [B*k, ...] -> [B, ...]
                p.grad_sample = p.grad_sample.unflatten(0, (examples, k)).sum(dim=1) / k
            rows = {examples}
        if rows != {examples}:
            raise RuntimeError(
                f"per-sample gradients have {sorted(rows)} rows for a batch of {examples} examples:"
                " the model must keep one row per example, or clipping would bound each row"
                " rather than each record and the privacy accounting would be wrong"
            )
        if self.extra_rows is not None:
            self.extra_rows.note_clipped_records(self.grad_samples, self.max_grad_norm)
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

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool:
        ready = super().pre_step(closure)
        if ready and self.extra_rows is not None:  # what the optimizer reads: noised, over B
            self.extra_rows.note_released([p.grad for p in self.params], self.expected_batch_size)
        return ready

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        before = [p.detach().clone() for p in self.params]
        loss = super().step(closure)
        if not self._is_last_step_skipped:
            check_step_moved_adapter(before, self.params, self.param_names)
        return loss


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
    canaries: CarriedCanaries | None = None,
    real_records: int | None = None,
    noise_scale_for_testing: float = 1.0,
    noise_source: NoiseSource = "aes_ctr",
    rows_per_record: int = 1,
) -> Iterator[PrivateRound]:
    """Make ``model`` train privately for one round; afterwards it is exactly as before.

    The model is not wrapped: Opacus's hooks are attached to it and removed on exit, so a
    fresh call next round stacks nothing. Sampling and noise come from ``noise_source``
    (module doc) keyed from OS entropy; ``generator`` (CPU) pins both for tests, and the
    round's ``noise_source`` label then says TEST ONLY. ``canaries`` (plan,
    institution, trace): that institution's included gradient canaries join every step (module
    docstring); ``real_records``: the count q is computed from (default ``len(dataset)``).
    ``rows_per_record``: model rows per record (multiple choice: one per option, consecutive);
    their per-row gradients are summed into the record's one before clipping.
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
        csprng = csprng_for(generator)
        sampling_rng = noise_rng = None
        sampler = CsprngPoissonSampler(
            num_samples=len(dataset), sample_rate=sample_rate, csprng=csprng
        )
        label = csprng.label
    elif noise_source == "torch":
        sampling_rng, noise_rng = torch_generators(generator, secure_mode, device)
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
        if canaries is not None:  # their own Poisson draws: OS entropy unless a test pins them
            extra_rows = GradientCanaryRows.private(
                canaries, trainable, sample_rate, max_grad_norm, sampling_rng
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
            rows_per_record=rows_per_record,
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
    canaries: CarriedCanaries | None = None,
    real_records: int | None = None,
    rows_per_record: int = 1,
) -> Any:
    """The local loop of one round under DP-SGD: ``steps`` noised steps on Poisson batches.

    ``bundle.model`` is the PEFT model, ``loss_fn(bundle, batch)`` the batch-mean loss.
    ``canaries``, ``real_records`` and ``rows_per_record``: as in ``dp_training``. Returns
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
        rows_per_record=rows_per_record,
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


def _remove_opacus_state(model: nn.Module) -> None:
    """Drop what Opacus leaves on parameters and modules after its own cleanup."""
    for p in model.parameters():
        if hasattr(p, "summed_grad"):
            del p.summed_grad
    for module in model.modules():
        for attr in ("activations", "max_batch_len"):
            if attr in module.__dict__:
                delattr(module, attr)
