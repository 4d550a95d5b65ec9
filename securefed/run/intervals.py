"""Confidence interval of a measured accuracy (audit tables and ``securefed evaluate``)."""

from __future__ import annotations


def wilson_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of an accuracy measured on ``n`` records (scipy's)."""
    from scipy.stats import binomtest  # scipy: the audit imports it only where it shows one

    hits = round(accuracy * n)
    ci = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
