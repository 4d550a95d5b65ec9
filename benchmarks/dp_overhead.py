"""Time per step of DP-SGD over non-private training, per adapter, on the default backbone.

One run measures, for LoRA, QLoRA (4-bit NF4 base) and IA3 on all-MiniLM-L6-v2 (the embedded
default, sequence classification with 3 labels), batches of 16 short sentences:

- ``plain``: AdamW on shuffled batches of 16 (the non-private loop);
- ``hooks``: ``securefed.privacy.dp_sgd.dp_training`` (Opacus hooks, Poisson batches of 16 on
  average, per-example clipping, noise and sampling from the AES-256-CTR CSPRNG): what
  securefed runs;
- ``mt``: the same with ``noise_source="torch"`` (torch's Mersenne Twister, Opacus's own
  path); ``csprng x`` = hooks / mt is the cost of the CSPRNG (target: at most 1.2);
- ``ghost``: Opacus ghost clipping (``grad_sample_mode="ghost"``: per-example norms without
  per-example gradients, then a second backward), tried for comparison only.

Modes are interleaved (each repeat times every mode once, fresh DP objects each time, as in a
round) and the median over repeats of the CPU time per step is reported, with torch on one
thread by default: on a shared machine, wall time measures the neighbours. Ratios are DP time
over plain time. Usage::

    python benchmarks/dp_overhead.py [--steps 10] [--repeats 5] [--threads 1]
                                     [--adapters lora qlora ia3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine  # ghost clipping is measured here only; securefed uses hooks
from torch.utils.data import DataLoader, TensorDataset

from securefed.config import ModelConfig
from securefed.model.adapters import AdapterModel, build_adapter_model
from securefed.privacy.dp_sgd import dp_training
from securefed.privacy.opacus_ia3 import ia3_for_opacus

BATCH, LABELS, EXAMPLES, MAX_LENGTH = 16, 3, 160, 32
SUBJECTS = ["Revenue", "The bank", "Profit", "The stock", "Guidance", "The insurer", "Demand"]
VERBS = ["rose", "fell", "held steady", "beat forecasts", "missed estimates", "was revised"]
TAILS = ["this quarter", "after the merger", "in Europe", "despite costs", "year on year"]


def sentences(n: int) -> list[str]:
    """``n`` short finance-like sentences, deterministic."""
    return [f"{SUBJECTS[i % 7]} {VERBS[(i // 7) % 6]} {TAILS[(i // 42) % 5]}." for i in range(n)]


def dataset(bundle: AdapterModel) -> TensorDataset:
    enc = bundle.tokenizer(
        sentences(EXAMPLES),
        max_length=MAX_LENGTH,
        truncation=True,
        padding="max_length",
        return_tensors="pt",
    )
    labels = torch.arange(EXAMPLES) % LABELS
    return TensorDataset(enc["input_ids"], enc["attention_mask"], labels)


def logits(bundle: AdapterModel, batch) -> torch.Tensor:
    return bundle.model(input_ids=batch[0], attention_mask=batch[1]).logits


def adamw(bundle: AdapterModel) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in bundle.model.parameters() if p.requires_grad], lr=1e-4)


def cycle(loader) -> Iterator:
    while True:
        yield from loader


def time_steps(step: Callable[[], None], steps: int, warmup: int = 2) -> float:
    """CPU seconds per step of this process, after ``warmup`` untimed steps.

    CPU time rather than wall time: on a shared machine other jobs inflate wall time.
    """
    for _ in range(warmup):
        step()
    start = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - start) / steps


def plain(bundle: AdapterModel, data: TensorDataset, steps: int) -> float:
    optimizer = adamw(bundle)
    batches = cycle(DataLoader(data, batch_size=BATCH, shuffle=True))

    def step() -> None:
        batch = next(batches)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(logits(bundle, batch), batch[2]).backward()
        optimizer.step()

    return time_steps(step, steps)


def hooks(
    bundle: AdapterModel, data: TensorDataset, steps: int, noise_source: str = "aes_ctr"
) -> float:
    with dp_training(
        bundle.model,
        adamw(bundle),
        data,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        batch_size=BATCH,
        noise_source=noise_source,
    ) as dp:
        batches = cycle(dp.loader)

        def step() -> None:
            batch = next(batches)
            dp.optimizer.zero_grad(set_to_none=True)
            if len(batch[0]) == 0:
                dp.step_on_empty_batch()
                return
            F.cross_entropy(logits(bundle, batch), batch[2]).backward()
            dp.optimizer.step()

        return time_steps(step, steps)


def ghost(bundle: AdapterModel, data: TensorDataset, steps: int) -> float:
    with ia3_for_opacus(bundle.model):
        engine = PrivacyEngine(accountant="rdp")
        grad_hooks, optimizer, criterion, loader = engine.make_private(
            module=bundle.model,
            optimizer=adamw(bundle),
            data_loader=DataLoader(data, batch_size=BATCH),
            criterion=torch.nn.CrossEntropyLoss(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            grad_sample_mode="ghost",
            wrap_model=False,
        )
        batches = cycle(loader)

        def step() -> None:
            batch = next(batches)
            optimizer.zero_grad(set_to_none=True)
            criterion(logits(bundle, batch), batch[2]).backward()
            optimizer.step()

        try:
            return time_steps(step, steps)
        finally:
            grad_hooks.cleanup()


MODES: dict[str, Callable[[AdapterModel, TensorDataset, int], float]] = {
    "plain": plain,
    "hooks": hooks,
    "mt": lambda bundle, data, steps: hooks(bundle, data, steps, noise_source="torch"),
    "ghost": ghost,
}


@contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def measure(adapter: str, steps: int, repeats: int) -> dict[str, float | str]:
    bundle = build_adapter_model(ModelConfig(adapter=adapter), num_labels=LABELS, seed=0)
    bundle.model.train()
    data = dataset(bundle)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for mode, run in MODES.items():
            if mode in errors:
                continue
            try:
                with quiet():
                    times[mode].append(run(bundle, data, steps))
            except Exception as exc:  # ghost clipping may not support a layer: report, go on
                errors[mode] = f"{type(exc).__name__}: {str(exc)[:80]}"
    row: dict[str, float | str] = {
        "adapter": adapter,
        "params": sum(p.numel() for p in bundle.model.parameters() if p.requires_grad),
    }
    for mode in MODES:
        row[mode] = statistics.median(times[mode]) if times[mode] else errors[mode]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode and repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--adapters", nargs="+", default=["lora", "qlora", "ia3"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, "
        f"length {MAX_LENGTH}; CPU ms per step, median of {args.repeats} x {args.steps} steps"
    )
    print(
        f"{'adapter':8} {'params':>8} {'plain':>9} {'hooks':>9} {'x':>6} {'mt':>9} {'x':>6} "
        f"{'ghost':>9} {'x':>6} {'csprng x':>9}"
    )
    for adapter in args.adapters:
        row = measure(adapter, args.steps, args.repeats)
        base = row["plain"]
        cells = [f"{row['adapter']:8} {row['params']:>8} {1e3 * base:>9.1f}"]
        for mode in ("hooks", "mt", "ghost"):
            t = row[mode]
            cells.append(
                f"{1e3 * t:>9.1f} {t / base:>5.2f}x"
                if isinstance(t, float)
                else f"{'n/a':>9} {'':>6}  ({mode}: {t})"
            )
        hooks_t, mt_t = row["hooks"], row["mt"]
        if isinstance(hooks_t, float) and isinstance(mt_t, float):
            cells.append(f"{hooks_t / mt_t:>8.3f}x")
        print(" ".join(cells), flush=True)


if __name__ == "__main__":
    main()
