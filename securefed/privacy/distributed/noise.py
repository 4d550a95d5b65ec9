"""Discrete noise each client adds to its integer vector before masking.

- ``skellam_noise``: Poisson(lambda) - Poisson(lambda), variance 2 lambda (Agarwal, Kairouz
  and Liu, NeurIPS 2021). A sum of independent Skellams is Skellam, so the secure sum of the
  clients' shares is exactly a Skellam of the summed variance.
- ``discrete_gaussian_noise``: the discrete Gaussian N_Z(0, sigma^2), by the rejection
  sampler of Canonne, Kamath and Steinke (NeurIPS 2020, Algorithm 3): propose from a
  discrete Laplace of scale t = floor(sigma) + 1, accept with probability
  exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)). Vectorised over numpy arrays: the proposals are
  numpy geometric draws and the acceptance test is in floating point, so it is the CKS
  distribution up to float64 rounding of the acceptance probabilities (the paper's
  rational-arithmetic version is exact but ~10^4 times slower in Python).

Both draw from the numpy ``Generator`` they are given; callers pass one seeded from OS
entropy (``os_noise_generator``), never a predictable seed (TF Privacy seeds its Skellam with
the timestamp: a pitfall not repeated here). numpy's Poisson sampler is PTRS (Hormann 1993)
for lambda >= 10 and Knuth's multiplication method below.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

_MAX_REJECTION_ROUNDS = 200  # acceptance >= ~0.3 per draw: 200 rounds fail with prob < 1e-30


def os_noise_generator() -> np.random.Generator:
    """A numpy Generator seeded with 256 bits from the OS CSPRNG."""
    return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(256)))


def skellam_noise(variance: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of Skellam(variance/2, variance/2) (int64): mean 0, the given variance."""
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"Skellam variance must be finite and > 0, got {variance}")
    lam = variance / 2.0
    return rng.poisson(lam, size) - rng.poisson(lam, size)


def discrete_laplace(scale: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws with P[y] proportional to exp(-|y| / scale) on the integers (int64).

    The difference of two iid geometrics on {0, 1, ...} with success 1 - exp(-1/scale).
    """
    p = -math.expm1(-1.0 / scale)
    return rng.geometric(p, size) - rng.geometric(p, size)


def discrete_gaussian_noise(sigma: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of the discrete Gaussian N_Z(0, sigma^2) (int64), CKS Algorithm 3."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"discrete Gaussian sigma must be finite and > 0, got {sigma}")
    t = math.floor(sigma) + 1
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    for _ in range(_MAX_REJECTION_ROUNDS):
        if pending.size == 0:
            return out
        # Acceptance is about 0.76 for large sigma (measured), lower for small: propose 1.5x.
        draws = discrete_laplace(t, pending.size * 3 // 2 + 16, rng)
        gap = np.abs(draws) - sigma * sigma / t
        accept = rng.random(draws.size) < np.exp(-(gap * gap) / (2.0 * sigma * sigma))
        kept = draws[accept][: pending.size]
        out[pending[: kept.size]] = kept
        pending = pending[kept.size :]
    raise RuntimeError("discrete Gaussian rejection sampler did not terminate")


def discrete_gaussian_pmf(values: np.ndarray, sigma: float) -> np.ndarray:
    """P[N_Z(0, sigma^2) = v] for integers ``values``; the normaliser is summed to 1e-300."""
    half = int(math.ceil(40.0 * sigma)) + 1
    support = np.arange(-half, half + 1, dtype=np.float64)
    normaliser = np.exp(-(support**2) / (2.0 * sigma * sigma)).sum()
    v = np.asarray(values, dtype=np.float64)
    return np.exp(-(v**2) / (2.0 * sigma * sigma)) / normaliser


def discrete_gaussian_variance(sigma: float) -> float:
    """Exact variance of N_Z(0, sigma^2) (slightly below sigma^2 for sigma < 1)."""
    half = int(math.ceil(40.0 * sigma)) + 1
    support = np.arange(-half, half + 1, dtype=np.float64)
    return float((support**2 * discrete_gaussian_pmf(support, sigma)).sum())
