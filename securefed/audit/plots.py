"""The audit's plots, drawn from the audit record alone (matplotlib, Agg backend, PNG bytes).

Every plot the audit promises is listed in ``PLOTS``; one that does not apply to a run (no
DP, no baselines, no finished round) comes back with the reason instead of an image, and the
renderers print that reason where the image would be.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from securefed.audit.source import as_float  # noqa: E402
from securefed.privacy.canaries import CanaryPlan  # noqa: E402
from securefed.privacy.display import epsilon_text  # noqa: E402

TRAININGS = ("federated", "centralized", "isolated")
COLOURS = {"federated": "#1f6feb", "centralized": "#8250df", "isolated": "#9a6700"}
PLOTS = {
    "accuracy": "Accuracy: federated vs centralized vs isolated",
    "accuracy_by_round": "Accuracy over rounds",
    "epsilon_by_client": "Epsilon spent per institution",
    "epsilon_by_round": "Epsilon over rounds against the budget",
    "canary_scores": "Canary scores: included vs excluded (empirical privacy audit)",
}


# Why an epsilon plot is absent when DP-SGD is off.
DP_OFF_REASONS = {
    "epsilon_by_client": "DP-SGD off: every institution that trained has epsilon = infinity",
    "epsilon_by_round": "DP-SGD off: epsilon is infinity from each institution's first round on",
}


@dataclass(frozen=True)
class Plot:
    """One figure of the audit: its PNG, or why there is none."""

    name: str
    title: str
    png: bytes | None
    absent_reason: str | None = None


def audit_plots(audit: dict) -> list[Plot]:
    """Every plot of ``PLOTS``, in that order."""
    drawers = {
        "accuracy": _accuracy,
        "accuracy_by_round": _accuracy_by_round,
        "epsilon_by_client": _epsilon_by_client,
        "epsilon_by_round": _epsilon_by_round,
        "canary_scores": _canary_scores,
    }
    plots = []
    for name, title in PLOTS.items():
        dp_off = not audit["privacy"]["dp_enabled"] and name in DP_OFF_REASONS
        result = DP_OFF_REASONS[name] if dp_off else drawers[name](audit)
        if isinstance(result, str):
            plots.append(Plot(name, title, None, result))
        else:
            plots.append(Plot(name, title, _png(result)))
    return plots


def _client_lines(by_round: list[dict], value, **style) -> tuple[plt.Figure, plt.Axes, list[int]]:
    """A figure with one line per institution (of the last round): ``value(record, id)``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    rounds = [r["round"] for r in by_round]
    for c in by_round[-1]["clients"]:
        ax.plot(rounds, [value(r, c) for r in by_round], label=f"inst. {c}", **style)
    return fig, ax, rounds


def _finite(value: object) -> float:
    """A recorded epsilon as a plottable float (infinity and missing: a gap)."""
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else math.nan


def _primary(audit: dict) -> str:
    return audit["accuracy"]["primary_metric"]


def _accuracy(audit: dict) -> plt.Figure | str:
    acc, metric = audit["accuracy"], _primary(audit)
    groups = ["pooled", *(f"inst. {c}" for c in acc["clients"])]
    rows = [acc["pooled"], *acc["clients"].values()]
    present = [t for t in TRAININGS if any(r.get(t) for r in rows)]
    if not present:
        return "no finished round and no baseline: nothing to compare"
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    width = 0.8 / len(present)
    for i, training in enumerate(present):
        xs = [g + (i - (len(present) - 1) / 2) * width for g in range(len(groups))]
        ys = [r[training][metric] if r.get(training) else 0.0 for r in rows]
        ax.bar(xs, ys, width, label=training, color=COLOURS[training])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: pooled test set and each institution's own test split")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def _accuracy_by_round(audit: dict) -> plt.Figure | str:
    acc, metric = audit["accuracy"], _primary(audit)
    by_round = acc["by_round"]
    if not by_round:
        return "no federated round finished"
    fig, ax, rounds = _client_lines(
        by_round, lambda r, c: r["clients"][c][metric], linewidth=0.8, alpha=0.6
    )
    ax.plot(
        rounds,
        [r["pooled"][metric] for r in by_round],
        marker="o",
        linewidth=2,
        color=COLOURS["federated"],
        label="federated (pooled)",
    )
    for training in ("centralized", "isolated"):
        block = acc["pooled"].get(training)
        if block:
            ax.axhline(
                block[metric], linestyle="--", color=COLOURS[training], label=f"{training} (pooled)"
            )
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.set_xticks(rounds)
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def _epsilon_by_client(audit: dict) -> plt.Figure:
    privacy = audit["privacy"]
    clients = privacy["clients"]
    eps = [as_float(c["epsilon"]) for c in clients.values()]
    target = as_float(privacy["target_epsilon"])
    finite = [e for e in eps if e is not None and math.isfinite(e)]
    top = max([*finite, target or 0.0, 1e-9]) * 1.15
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    labels = [f"inst. {c}" for c in clients]
    ax.bar(
        labels,
        [e if e is not None and math.isfinite(e) else top for e in eps],
        color=[
            "#cf222e" if e is None or not math.isfinite(e) else COLOURS["federated"] for e in eps
        ],
    )
    for i, e in enumerate(eps):
        text = "inf" if e is None or not math.isfinite(e) else f"{e:.3g}"
        ax.text(
            i,
            min(e if e is not None and math.isfinite(e) else top, top),
            text,
            ha="center",
            va="bottom",
            fontsize="small",
        )
    if target is not None:
        ax.axhline(target, color="#cf222e", linestyle="--", label=f"budget {target:g}")
        ax.legend(loc="lower right")
    ax.set_ylabel(f"epsilon ({privacy['accountant_of_record']})")
    ax.set_ylim(0, top * 1.1)
    return fig


def _epsilon_by_round(audit: dict) -> plt.Figure | str:
    privacy = audit["privacy"]
    by_round = privacy["epsilon_by_round"]
    if not by_round:
        return "no federated round finished"
    fig, ax, rounds = _client_lines(by_round, lambda r, c: _finite(r["clients"].get(c)), marker="o")
    target = as_float(privacy["target_epsilon"])
    if target is not None:
        ax.axhline(target, color="#cf222e", linestyle="--", label=f"budget {target:g}")
    ax.set_xlabel("round")
    ax.set_ylabel(f"epsilon ({privacy['accountant_of_record']})")
    ax.set_xticks(rounds)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="x-small")
    return fig


def _canary_scores(audit: dict) -> plt.Figure | str:
    """Histograms of the canaries' scores by secret coin: the further apart, the larger the
    measured leak."""
    empirical = audit["empirical"]
    if "scores" not in empirical:
        return empirical["note"]
    scores = [as_float(s) for s in empirical["scores"]]
    coins = CanaryPlan.from_json(empirical["plan"]).included
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    bins = min(60, max(10, len(scores) // 10))
    edges = np.histogram_bin_edges(scores, bins=bins)
    for chosen, label, colour in ((True, "included", "#cf222e"), (False, "excluded", "#1f6feb")):
        picked = [s for s, c in zip(scores, coins, strict=True) if c == chosen]
        ax.hist(picked, bins=edges, alpha=0.6, color=colour, label=f"{label} ({len(picked)})")
    claimed = as_float(empirical["claimed_epsilon"])
    ax.set_title(
        f"lower bound {as_float(empirical['epsilon_lower_bound']):.2f}, estimate "
        f"{as_float(empirical['epsilon_estimate']):.3g}, claimed "
        + (epsilon_text(claimed, 3, "inf") if claimed is not None else "inf"),
        fontsize="small",
    )
    ax.set_xlabel(f"score ({empirical['canary_kind']} canaries)")
    ax.set_ylabel("canaries")
    ax.legend(fontsize="small")
    return fig


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
