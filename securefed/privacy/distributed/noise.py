"""Discrete noise each client adds to its integer vector before masking.

- ``skellam_noise``: Poisson(lambda) - Poisson(lambda), variance 2 lambda (Agarwal, Kairouz
  and Liu, NeurIPS 2021). A sum of independent Skellams is Skellam, so the secure sum of the
  clients' shares is exactly a Skellam of the summed variance.
- ``discrete_gaussian_noise``: the discrete Gaussian N_Z(0, sigma^2), by the rejection
  sampler of Canonne, Kamath and Steinke (NeurIPS 2020, Algorithm 3): propose from a
  discrete Laplace of scale t = floor(sigma) + 1, accept with probability
  exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)). Vectorised over numpy arrays in floating point,
  so it is the CKS distribution up to float64 rounding of the acceptance probabilities and of
  the geometric proposals (the paper's rational-arithmetic version is exact but ~10^4 times
  slower in Python).

Both draw every random bit from ``secure_noise.AesCtrRandom``, the AES-256-CTR keystream
DP-SGD's noise comes from (``share_random``: a fresh key from ``os.urandom`` per share), never
from a seeded or predictable generator (TF Privacy seeds its Skellam with the timestamp).
numpy's Poisson and geometric samplers cannot be fed from that keystream (a numpy
``BitGenerator`` has a C interface only), so they are written here on its 53-bit uniforms:
Poisson by the algorithms numpy itself uses, Hormann's PTRS (1993) for lambda >= 10 and
Knuth's multiplication method below; geometric by inversion.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from securefed.privacy.secure_noise import AesCtrRandom

_MAX_REJECTION_ROUNDS = 200  # acceptance >= ~0.3 per draw: 200 rounds fail with prob < 1e-30
_PTRS_MIN_LAMBDA = 10.0  # numpy's switch from multiplication to PTRS
_MAX_KNUTH_STEPS = 1000  # P[Poisson(10) > 1000] is far below 1e-300


def share_random() -> AesCtrRandom:
    """The generator of one noise share: AES-256-CTR with a fresh key from ``os.urandom``."""
    return AesCtrRandom.from_os_entropy()


def poisson(lam: float, size: int, rng: AesCtrRandom) -> np.ndarray:
    """``size`` Poisson(``lam``) draws (int64) from ``rng``'s uniforms."""
    if lam < _PTRS_MIN_LAMBDA:
        return _poisson_multiplication(lam, size, rng)
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    out = np.empty(size, dtype=np.int64)
    pending = np.arange(size)
    for _ in range(_MAX_REJECTION_ROUNDS):
        if pending.size == 0:
            return out
        n = pending.size * 11 // 10 + 16  # PTRS accepts ~90% of proposals at lambda >= 10
        u = rng.uniform(n) - 0.5
        v = rng.uniform(n)
        us = 0.5 - np.abs(u)
        k = np.floor((2.0 * a / us + b) * u + lam + 0.43)
        accept = (us >= 0.07) & (v <= vr)  # the quick acceptance: ~90% of proposals
        slow = np.flatnonzero(~accept & (k >= 0) & ~((us < 0.013) & (v > us)))
        ks, uss = k[slow], us[slow]
        log_pmf = -lam + ks * loglam - special.gammaln(ks + 1.0)
        accept[slow] = np.log(v[slow]) + log_invalpha - np.log(a / (uss * uss) + b) <= log_pmf
        kept = k[accept][: pending.size].astype(np.int64)
        out[pending[: kept.size]] = kept
        pending = pending[kept.size :]
    raise RuntimeError("Poisson rejection sampler did not terminate")


def _poisson_multiplication(lam: float, size: int, rng: AesCtrRandom) -> np.ndarray:
    """Knuth: the number of uniforms multiplied before the product falls below exp(-lam)."""
    limit = math.exp(-lam)
    product = rng.uniform(size)
    count = np.zeros(size, dtype=np.int64)
    for _ in range(_MAX_KNUTH_STEPS):
        active = np.flatnonzero(product > limit)
        if active.size == 0:
            return count
        count[active] += 1
        product[active] *= rng.uniform(active.size)
    raise RuntimeError("Poisson multiplication sampler did not terminate")


def skellam_noise(variance: float, size: int, rng: AesCtrRandom) -> np.ndarray:
    """``size`` draws of Skellam(variance/2, variance/2) (int64): mean 0, the given variance."""
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"Skellam variance must be finite and > 0, got {variance}")
    lam = variance / 2.0
    return poisson(lam, size, rng) - poisson(lam, size, rng)


def geometric_failures(p: float, size: int, rng: AesCtrRandom) -> np.ndarray:
    """``size`` draws of the failures before the first success, success probability ``p``
    (int64 on {0, 1, ...}), by inversion: floor(log U / log(1 - p))."""
    return np.floor(np.log(rng.uniform(size)) / math.log1p(-p)).astype(np.int64)


def discrete_laplace(scale: float, size: int, rng: AesCtrRandom) -> np.ndarray:
    """``size`` draws with P[y] proportional to exp(-|y| / scale) on the integers (int64).

    The difference of two iid geometrics on {0, 1, ...} with success 1 - exp(-1/scale).
    """
    p = -math.expm1(-1.0 / scale)
    return geometric_failures(p, size, rng) - geometric_failures(p, size, rng)


def discrete_gaussian_noise(sigma: float, size: int, rng: AesCtrRandom) -> np.ndarray:
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
        accept = rng.uniform(draws.size) < np.exp(-(gap * gap) / (2.0 * sigma * sigma))
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
