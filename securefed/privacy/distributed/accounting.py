"""Institution-level RDP of distributed discrete noise, with client subsampling, to epsilon.

All quantities are in the integer (scaled) domain where the noise is added: sensitivities
are the L2 / L1 norm bounds of one institution's rounded vector, variances are of the noise.
Each round counts the noise of ``event.protecting_shares`` (events.py: of the n shares that
reached the sum, n - 1 - c: the protected institution's own leaves with it under add/remove,
and the c colluders' are known to the adversary).

- Skellam (Agarwal, Kairouz, Liu, NeurIPS 2021, Theorem 3.5 as implemented in
  google-research/federated ``distributed_dp/accounting_utils.py``), central variance mu:
      eps(a) = a D2^2 / (2 mu) + min( ((2a - 1) D2^2 + 6 D1) / (4 mu^2), 3 D1 / (2 mu) ).
- Distributed discrete Gaussian (Kairouz, Liu, Steinke, ICML 2021, Proposition 14), n
  protecting contributors each adding N_Z(0, s^2),
  tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k/(k+1)):
      eps(a) = min( a/2 r2^2 + tau d, a/2 (r2^2 + 2 r1 tau + tau^2 d), a/2 (r2 + sqrt(d) tau)^2 )
  with r2 = D2 / (sqrt(n) s), r1 = D1 / (sqrt(n) s).
- Client subsampling: the general upper bound for Poisson-subsampled RDP of Zhu and Wang
  (ICML 2019, Theorem 9), which holds for any mechanism's RDP curve at integer orders.
  dp-accounting implements subsampling only for its own event types (Gaussian, Laplace),
  not for a custom curve, so it is written here; dp-accounting converts RDP to epsilon.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon
from scipy import special

from securefed.privacy.distributed.events import DistributedNoiseEvent

# Integer orders (the subsampling bound needs them), as in google-research/federated.
RDP_ORDERS: tuple[int, ...] = (*range(2, 129), 256)

RdpCurve = Callable[[np.ndarray], np.ndarray]  # orders (float64 array) -> RDP at each order


def rounded_l2_bound(l2_norm: float, beta: float, dimension: int) -> float:
    """L2 bound after (conditional) stochastic rounding of a vector of norm <= ``l2_norm``.

    Kairouz et al. Theorem 1 / Proposition 22: l2 + sqrt(d) always; with conditional
    rounding at beta in (0, 1) also sqrt(l2^2 + d/4 + sqrt(2 ln(1/beta)) (l2 + sqrt(d)/2)).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    plain = l2_norm + math.sqrt(dimension)
    if beta == 0.0:
        return plain
    conditional = math.sqrt(
        l2_norm**2
        + dimension / 4.0
        + math.sqrt(2.0 * math.log(1.0 / beta)) * (l2_norm + math.sqrt(dimension) / 2.0)
    )
    return min(plain, conditional)


def rounded_l1_bound(l2_bound: float, dimension: int) -> float:
    """L1 bound of an integer vector of L2 norm <= ``l2_bound``: min(sqrt(d), l2) * l2."""
    return l2_bound * min(math.sqrt(dimension), l2_bound)


def skellam_rdp(
    orders: np.ndarray, l1_sensitivity: float, l2_sensitivity: float, central_variance: float
) -> np.ndarray:
    """RDP of the Skellam mechanism of central variance ``central_variance`` at ``orders``."""
    a, mu = np.asarray(orders, dtype=np.float64), central_variance
    d1, d2 = l1_sensitivity, l2_sensitivity
    gaussian_like = a * d2**2 / (2.0 * mu)
    correction = np.minimum(((2.0 * a - 1.0) * d2**2 + 6.0 * d1) / (4.0 * mu**2), 1.5 * d1 / mu)
    return gaussian_like + correction


def ddgauss_tau(local_variance: float, contributors: int) -> float:
    """Kairouz et al.'s tau: how far a sum of ``contributors`` discrete Gaussians is from one."""
    k = np.arange(1, contributors, dtype=np.float64)
    return float(10.0 * np.exp(-2.0 * math.pi**2 * local_variance * k / (k + 1.0)).sum())


def ddgauss_rdp(
    orders: np.ndarray,
    l1_sensitivity: float,
    l2_sensitivity: float,
    local_variance: float,
    contributors: int,
    dimension: int,
) -> np.ndarray:
    """RDP of the distributed discrete Gaussian (Kairouz et al. Proposition 14) at ``orders``."""
    a = np.asarray(orders, dtype=np.float64)
    central_std = math.sqrt(contributors * local_variance)
    r2, r1 = l2_sensitivity / central_std, l1_sensitivity / central_std
    tau = ddgauss_tau(local_variance, contributors)
    term_1 = a / 2.0 * r2**2 + tau * dimension
    term_2 = a / 2.0 * (r2**2 + 2.0 * r1 * tau + tau**2 * dimension)
    term_3 = a / 2.0 * (r2 + math.sqrt(dimension) * tau) ** 2
    return np.minimum(np.minimum(term_1, term_2), term_3)


def poisson_subsampled_rdp(orders: Iterable[int], sample_rate: float, rdp: RdpCurve) -> np.ndarray:
    """RDP at integer ``orders`` of ``rdp``'s mechanism run on a Poisson sample (rate q).

    Zhu and Wang (2019) Theorem 9: for integer a >= 2,
    (a-1) eps'(a) <= log[ (1-q)^(a-1) (a q - q + 1) + C(a,2) q^2 (1-q)^(a-2) e^eps(2)
                          + 3 sum_{l=3}^{a} C(a,l) q^l (1-q)^(a-l) e^((l-1) eps(l)) ],
    and never more than the unsampled eps(a).
    """
    order_list = [int(a) for a in orders]
    if any(a < 2 for a in order_list):
        raise ValueError("the subsampling bound needs integer orders >= 2")
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    top = max(order_list)
    levels = np.arange(2, top + 1)
    eps = np.asarray(rdp(levels.astype(np.float64)), dtype=np.float64)  # eps(l), l = 2..top
    if sample_rate == 1.0:
        return eps[np.asarray(order_list) - 2]
    q, log_q, log_1mq = sample_rate, math.log(sample_rate), math.log1p(-sample_rate)
    a = np.asarray(order_list, dtype=np.float64)[:, None]  # (orders, 1)
    ls = levels.astype(np.float64)[None, :]  # (1, top - 1): l = 2..top
    log_comb = special.gammaln(a + 1) - special.gammaln(ls + 1) - special.gammaln(a - ls + 1)
    exponent = np.where(ls == 2, eps[0], (ls - 1) * eps[None, :])  # e^eps(2) for l = 2
    terms = np.where(ls <= a, exponent + log_comb + (a - ls) * log_1mq + ls * log_q, -np.inf)
    weights = np.where(ls == 2, 1.0, 3.0) * np.ones_like(terms)
    head = (a - 1) * log_1mq + np.log(a * q - q + 1.0)  # (orders, 1)
    total = special.logsumexp(
        np.concatenate([head, terms], axis=1),
        b=np.concatenate([np.ones_like(head), weights], axis=1),
        axis=1,
    )
    unsampled = eps[np.asarray(order_list) - 2]
    return np.minimum(total / (a[:, 0] - 1.0), unsampled)


def event_rdp(event: DistributedNoiseEvent, orders: Iterable[int] = RDP_ORDERS) -> np.ndarray:
    """RDP at ``orders`` of one round's institution-level release, subsampling included;
    infinite when no share but the protected institution's own and the colluders' reached
    the sum."""
    protecting = event.protecting_shares
    if protecting < 1:
        return np.full(len(list(orders)), np.inf)
    if event.mechanism == "skellam":
        central = protecting * event.local_variance

        def curve(a: np.ndarray) -> np.ndarray:
            return skellam_rdp(a, event.l1_sensitivity, event.l2_sensitivity, central)

    else:

        def curve(a: np.ndarray) -> np.ndarray:
            return ddgauss_rdp(
                a,
                event.l1_sensitivity,
                event.l2_sensitivity,
                event.local_variance,
                protecting,
                event.dimension,
            )

    return poisson_subsampled_rdp(orders, event.sample_rate, curve)


def institution_epsilon(
    events: Iterable[DistributedNoiseEvent], delta: float, orders: Iterable[int] = RDP_ORDERS
) -> float:
    """(epsilon, ``delta``)-DP of the composed rounds for one institution under
    ``events.INSTITUTION_RELATION``; infinite when a round left it no protecting share."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    order_list = [int(a) for a in orders]
    # Rounds that differ only in their index have the same RDP: compute each curve once.
    counts = Counter(dataclasses.replace(event, round_index=0) for event in events)
    total = np.zeros(len(order_list))
    for event, rounds in counts.items():
        total += rounds * event_rdp(event, order_list)
    if not total.any():
        return 0.0
    if not np.isfinite(total).all():
        return math.inf
    epsilon, _ = compute_epsilon(order_list, total.tolist(), delta)
    return float(epsilon)
