"""Scores of gradient (Dirac) canaries from their carriers' traces (``canary_trace``).

Canary i is the coordinate k_i of the adapter with a sign s_i (``canaries.
canary_coordinates``); an included one, each step it is sampled, adds s_i C at k_i to its
carrier's clipped sum. At every step of its carrier the trace holds the privatized sum at
k_i and the records' part of it; the difference is the canary's own C s_i when it was
sampled, plus the Gaussian noise (sigma C, the same every step). Canary i scores s_i times
that difference summed over its carrier's steps: for an excluded canary a sum of noise,
N(0, steps sigma^2 C^2); for an included one that plus C times Binomial(steps, q).

Kept linear on purpose: a likelihood-ratio score (the Neyman-Pearson test of the
subsampled Gaussian) lifted the one-run bound at configs/dp.yaml's epsilon 8 (sigma 0.855,
q 0.128, 32 canary steps) from 1.0-1.3 to 1.5-1.8 in three simulated draws, but its scores
are far from Gaussian and the two-Gaussian estimate on them read 13-16 for a true 7.3.
Scored on what the server sees instead (the mean of every institution's update: four
institutions' noise, the optimizer, the records' drift), the same canaries on
configs/dp.yaml gave 2.70 without DP and could not reach 2 with a tenth of the noise at
epsilon 2 (docs/empirical-audit.md).
"""

from __future__ import annotations

import numpy as np

from securefed.privacy.canaries import CanaryPlan, canary_coordinates
from securefed.privacy.canary_trace import CanaryTrace


def gradient_scores(plan: CanaryPlan, trace: CanaryTrace) -> np.ndarray:
    """[m] scores of gradient canaries (module docstring), in float64 from ``trace``."""
    _, signs = canary_coordinates(plan)
    scores = np.zeros(plan.count)
    for institution in plan.institutions:
        carried = plan.carried_by(institution)
        released, records, divisor = trace.steps(institution)
        residual = released.astype(np.float64) * divisor[:, None] - records  # [steps, carried]
        scores[carried] = signs[carried] * residual.sum(axis=0)
    return scores
