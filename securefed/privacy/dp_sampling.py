"""How DP-SGD draws its batches: Poisson sampling at q = min(1, B / N), from the CSPRNG
(``secure_noise.AesCtrRandom``, the default) or from torch generators seeded from OS entropy,
with Opacus's collation (empty batches included). Torch and Opacus; used by ``dp_sgd``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator

import torch
from opacus.data_loader import dtype_safe, shape_safe, wrap_collate_with_empty
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch.utils.data import DataLoader, Dataset, default_collate

from securefed.errors import ConfigError
from securefed.privacy.secure_noise import AesCtrRandom

NOISE_SOURCE_TORCH = "torch Mersenne Twister seeded from os.urandom (not cryptographic)"
NOISE_SOURCE_TORCHCSPRNG = "torchcsprng /dev/urandom (Opacus secure_mode)"


def sample_rate_for(num_records: int, batch_size: int) -> float:
    """Poisson sampling rate for an expected batch of ``batch_size`` from ``num_records``."""
    if num_records < 1 or batch_size < 1:
        raise ValueError(
            f"need num_records >= 1 and batch_size >= 1, got {num_records}, {batch_size}"
        )
    return min(1.0, batch_size / num_records)


class CsprngPoissonSampler(UniformWithReplacementSampler):
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


def csprng_for(pinned: torch.Generator | None) -> AesCtrRandom:
    """The round's CSPRNG: a fresh OS-entropy key, or a test-only key from a pinned generator."""
    if pinned is None:
        return AesCtrRandom.from_os_entropy()
    return AesCtrRandom.seeded_for_tests(int(torch.randint(0, 2**62, (1,), generator=pinned)))


def _entropy_generator(device: torch.device) -> torch.Generator:
    rng = torch.Generator(device=device)
    rng.manual_seed(int.from_bytes(os.urandom(8), "little"))
    return rng


def torch_generators(
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
        stacklevel=5,  # the caller of dp_training
    )
    sampling = pinned if pinned is not None else _entropy_generator(torch.device("cpu"))
    if device.type == "cpu":
        return sampling, sampling
    if pinned is None:
        return sampling, _entropy_generator(device)
    noise = torch.Generator(device=device)
    noise.manual_seed(int(torch.randint(0, 2**62, (1,), generator=pinned)))
    return sampling, noise
