"""The statistical check of noise scale shared by DP-SGD's normals and the distributed noise
shares: it passes on correct noise and, at 200,000 draws, fails on 0.9x the scale."""

from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 1e-6  # false-rejection rate of each check on correct noise


def gaussian_p_values(z: np.ndarray, std: float) -> dict[str, float]:
    """Two-sided p-values that ``z`` is i.i.d. N(0, std^2): mean (z test), variance (chi-square
    on sum z^2 / std^2 with n degrees of freedom), shape (Kolmogorov-Smirnov)."""
    n = z.size
    mean_z = float(z.mean()) / (std / np.sqrt(n))
    chi2 = float(np.sum((z / std) ** 2))
    cdf = stats.chi2.cdf(chi2, df=n)
    return {
        "mean": float(2 * stats.norm.sf(abs(mean_z))),
        "variance": float(2 * min(cdf, 1 - cdf)),
        "shape": float(stats.kstest(z / std, "norm").pvalue),
    }
