"""Parameter choice for distributed discrete noise: scale, noise share, modular headroom.

Following TFF's ``DistributedDpSumFactory`` and google-research/federated
``distributed_dp/accounting_utils.py`` (Kairouz, Liu, Steinke ICML 2021 sections 4.2-4.4):

- ``modclip_stddevs`` (``securefed.config``, which checks the bit width with it when the
  config loads): the aggregate coordinate is treated as Gaussian; k standard deviations fit
  in the modulus with two-sided tail ``modclip_probability`` (1e-4: k = 3.89).
- ``heuristic_scale``: the scale s = 1/gamma solving
  2^b = 2k sqrt(rho/d (c n)^2 + (gamma^2/4 + sigma^2) n) / gamma, for the whole cohort n
  (the widest sum the modulus must hold: nobody dropped).
- ``plan_distributed_dp``: the noise for ``target_epsilon`` over all rounds, calibrated for
  the smallest survivor set the secure-aggregation threshold allows under
  ``events.INSTITUTION_RELATION``: the protected institution's own share leaves with it and
  the c colluders' shares are known, so the min_survivors - 1 - c other shares must carry the
  central noise (each client adds central / (min_survivors - 1 - c) of its variance); any
  allowed survivor set protects each of its members at least as well (better when more
  survive). The rounding inflation of the
  sensitivity and the scale's dependence on the noise are inside the calibration, so the
  target holds for the integer mechanism actually run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

from securefed.config import modclip_stddevs
from securefed.privacy.distributed.accounting import (
    RDP_ORDERS,
    event_rdp,
    rounded_l1_bound,
    rounded_l2_bound,
)
from securefed.privacy.distributed.events import (
    MECHANISMS,
    DistributedNoiseEvent,
    Mechanism,
    protecting_shares,
)
from securefed.privacy.distributed.rotation import padded_dimension

DEFAULT_BETA = math.exp(-0.5)  # conditional rounding, as in Kairouz et al.'s experiments
_SIGMA_RANGE = (1e-3, 1e4)  # central noise multipliers searched (std / clip norm)


def institution_delta(num_institutions: int) -> float:
    """``privacy.distributed.delta: auto``: min(1e-5, num_institutions^-1.1)."""
    if num_institutions < 1:
        raise ValueError(f"num_institutions must be >= 1, got {num_institutions}")
    return min(1e-5, float(num_institutions) ** -1.1)


def heuristic_scale(
    local_stddev: float,
    clip_norm: float,
    bits: int,
    clients: int,
    dimension: int,
    k_stddevs: float,
    rho: float = 1.0,
) -> float:
    """TFF's scale: k std of the noisy, rounded sum of ``clients`` vectors fill 2^bits."""
    if 4.0**bits < clients * k_stddevs**2:
        raise ValueError(
            f"bits={bits} is too small for {clients} clients at {k_stddevs:.2f} std of headroom"
        )
    numerator = math.sqrt(4.0**bits - clients * k_stddevs**2)
    denominator = (
        2.0
        * k_stddevs
        * math.sqrt(rho / dimension * clip_norm**2 * clients**2 + clients * local_stddev**2)
    )
    return numerator / denominator


@dataclass(frozen=True)
class DistributedDpPlan:
    """Everything a client and the server need, public; bound into the vector spec.

    ``scale``: integer units per unit of the clipped, rotated vector; ``local_variance``:
    each client's noise variance in integer units (sigma^2 of its discrete Gaussian);
    ``l2_sensitivity`` / ``l1_sensitivity``: bounds on one client's rounded integer vector;
    ``colluders``: c, the colluding institutions whose shares are not counted.
    """

    mechanism: Mechanism
    dimension: int
    padded_dimension: int
    clip_norm: float
    bits: int
    scale: float
    local_variance: float
    beta: float
    l2_sensitivity: float
    l1_sensitivity: float
    cohort_size: int
    min_survivors: int
    colluders: int
    sample_rate: float
    rounds: int
    modclip_probability: float
    target_epsilon: float
    delta: float

    def event(self, round_index: int, noise_contributors: int) -> DistributedNoiseEvent:
        """The ledger event of a round whose sum carries ``noise_contributors`` shares."""
        return DistributedNoiseEvent(
            mechanism=self.mechanism,
            round_index=round_index,
            sample_rate=self.sample_rate,
            noise_contributors=noise_contributors,
            local_variance=self.local_variance,
            l2_sensitivity=self.l2_sensitivity,
            l1_sensitivity=self.l1_sensitivity,
            dimension=self.padded_dimension,
            colluders=self.colluders,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def to_bytes(self) -> bytes:
        """Canonical encoding (sorted JSON, floats as repr), for the vector-spec hash."""
        return json.dumps(self.to_json(), sort_keys=True).encode()


def _plan_for_noise(
    central_multiplier: float,
    *,
    mechanism: Mechanism,
    clip_norm: float,
    bits: int,
    dimension: int,
    cohort_size: int,
    min_survivors: int,
    colluders: int,
    beta: float,
    k_stddevs: float,
) -> tuple[float, float, float, float]:
    """(scale, local variance, L2, L1 sensitivity) in integer units for one noise level:
    ``central_multiplier`` * clip is the std of the shares that protect one institution."""
    m = padded_dimension(dimension)
    protecting = protecting_shares(min_survivors, colluders)
    local_std = central_multiplier * clip_norm / math.sqrt(protecting)
    scale = heuristic_scale(local_std, clip_norm, bits, cohort_size, m, k_stddevs)
    l2 = rounded_l2_bound(scale * clip_norm, beta, m)
    return scale, (scale * local_std) ** 2, l2, rounded_l1_bound(l2, m)


def plan_distributed_dp(
    *,
    mechanism: Mechanism,
    target_epsilon: float,
    delta: float,
    clip_norm: float,
    bits: int,
    dimension: int,
    cohort_size: int,
    min_survivors: int,
    colluders: int,
    sample_rate: float,
    rounds: int,
    modclip_probability: float = 1e-4,
    beta: float = DEFAULT_BETA,
) -> DistributedDpPlan:
    """The least noise whose ``rounds`` rounds, with ``min_survivors`` shares each reaching the
    sum, ``colluders`` of them known to the adversary, give each honest one at most
    (``target_epsilon``, ``delta``) under ``events.INSTITUTION_RELATION``; raises
    ``ValueError`` when no noise level does."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if isinstance(colluders, bool) or not isinstance(colluders, int) or colluders < 0:
        raise ValueError(f"colluders must be an integer >= 0, got {colluders!r}")
    if not (protecting_shares(min_survivors, colluders) >= 1 and min_survivors <= cohort_size):
        raise ValueError(
            f"min_survivors must be in [{colluders + 2}, {cohort_size}] (one institution's own "
            f"share and the {colluders} colluders' do not protect it), got {min_survivors}"
        )
    if not (target_epsilon > 0 and 0 < delta < 1 and clip_norm > 0 and rounds >= 1):
        raise ValueError("target_epsilon, clip_norm and rounds must be > 0, delta in (0, 1)")
    k = modclip_stddevs(modclip_probability)
    shape = {
        "mechanism": mechanism,
        "clip_norm": clip_norm,
        "bits": bits,
        "dimension": dimension,
        "cohort_size": cohort_size,
        "min_survivors": min_survivors,
        "colluders": colluders,
        "beta": beta,
        "k_stddevs": k,
    }

    def epsilon(log_multiplier: float) -> float:
        scale, variance, l2, l1 = _plan_for_noise(math.exp(log_multiplier), **shape)
        event = DistributedNoiseEvent(
            mechanism,
            0,
            sample_rate,
            min_survivors,
            variance,
            l2,
            l1,
            padded_dimension(dimension),
            colluders,
        )
        rdp = event_rdp(event) * rounds
        return float(compute_epsilon(list(RDP_ORDERS), rdp.tolist(), delta)[0])

    low, high = (math.log(s) for s in _SIGMA_RANGE)
    if epsilon(high) > target_epsilon:
        raise ValueError(
            f"no noise level reaches epsilon {target_epsilon} with bits={bits}, "
            f"{cohort_size} clients and dimension {dimension} (rounding inflation too large)"
        )
    while high - low > 1e-5:  # bisection on log(noise multiplier); epsilon falls as noise grows
        mid = (low + high) / 2.0
        low, high = (mid, high) if epsilon(mid) > target_epsilon else (low, mid)
    scale, variance, l2, l1 = _plan_for_noise(math.exp(high), **shape)
    return DistributedDpPlan(
        mechanism=mechanism,
        dimension=dimension,
        padded_dimension=padded_dimension(dimension),
        clip_norm=clip_norm,
        bits=bits,
        scale=scale,
        local_variance=variance,
        beta=beta,
        l2_sensitivity=l2,
        l1_sensitivity=l1,
        cohort_size=cohort_size,
        min_survivors=min_survivors,
        colluders=colluders,
        sample_rate=sample_rate,
        rounds=rounds,
        modclip_probability=modclip_probability,
        target_epsilon=target_epsilon,
        delta=delta,
    )


def central_noise_std(plan: DistributedDpPlan, noise_contributors: int) -> float:
    """Std of the noise in the descaled sum (units of the update) when that many shares add."""
    return float(np.sqrt(noise_contributors * plan.local_variance) / plan.scale)
