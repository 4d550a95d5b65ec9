"""The sweep's plots (matplotlib, Agg, PNG), drawn from the table's rows alone.

* ``accuracy_vs_epsilon.png``: federated metric against the largest epsilon, one line per
  adapter and one panel per task, with the Pareto frontier over all adapters (the points no
  other point beats on both privacy and accuracy). Non-private cells sit at the right edge.
* ``accuracy_vs_energy.png``: federated metric against energy, per adapter, each point
  labelled with its epsilon (drawn only when the cells recorded energy).
* ``federated_vs_baselines.png``: federated, centralized and isolated side by side for
  every cell, one panel per task.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from securefed.privacy.display import epsilon_text  # noqa: E402

Row = dict[str, Any]
TRAININGS = ("federated", "centralized", "isolated")
TRAINING_COLOURS = {"federated": "#1f6feb", "centralized": "#8250df", "isolated": "#9a6700"}
ADAPTER_MARKERS = {"lora": "o", "ffa_lora": "D", "qlora": "s", "ia3": "^"}


def write_plots(rows: list[Row], plots_dir: Path) -> list[Path]:
    """Draw every plot that the finished ``rows`` support; returns the files written."""
    rows = [r for r in rows if r.get("federated") is not None]
    if not rows:
        return []
    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (
        ("accuracy_vs_epsilon", accuracy_vs_epsilon),
        ("accuracy_vs_energy", accuracy_vs_energy),
        ("federated_vs_baselines", federated_vs_baselines),
    ):
        fig = draw(rows)
        if fig is None:
            continue
        path = plots_dir / f"{name}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _by_task(rows: list[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row["task"]].append(row)
    return dict(sorted(groups.items()))


def _panels(count: int, width: float = 5.2, height: float = 3.6):
    fig, axes = plt.subplots(1, count, figsize=(width * count, height), dpi=100, squeeze=False)
    return fig, list(axes[0])


def _eps_label(eps: float | None) -> str:
    return "no DP" if eps is None or math.isinf(eps) else f"ε={epsilon_text(eps, 2)}"


def mean_by_epsilon(rows: list[Row]) -> list[tuple[float, float]]:
    """(epsilon, mean federated metric) per distinct epsilon, sorted; repeats (seeds) averaged."""
    groups: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        eps = row["eps_max"] if row["eps_max"] is not None else math.inf
        groups[float(epsilon_text(eps, 3, "inf"))].append(row["federated"])
    return sorted((eps, sum(v) / len(v)) for eps, v in groups.items())


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (epsilon, accuracy) that no other point matches or beats on both axes."""
    frontier: list[tuple[float, float]] = []
    for eps, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not frontier or acc > frontier[-1][1]:
            frontier.append((eps, acc))
    return frontier


def accuracy_vs_epsilon(rows: list[Row]) -> plt.Figure:
    tasks = _by_task(rows)
    fig, axes = _panels(len(tasks))
    for ax, (task, task_rows) in zip(axes, tasks.items(), strict=True):
        by_adapter: dict[str, list[Row]] = defaultdict(list)
        for row in task_rows:
            by_adapter[row["adapter"]].append(row)
        curves = {a: mean_by_epsilon(rs) for a, rs in sorted(by_adapter.items())}
        finite = [e for pts in curves.values() for e, _ in pts if math.isfinite(e)]
        right = max(finite) * 2 if finite else 1.0
        placed = {
            a: [(e if math.isfinite(e) else right, y) for e, y in pts] for a, pts in curves.items()
        }
        for adapter, pts in placed.items():
            ax.plot(
                *zip(*pts, strict=True), marker=ADAPTER_MARKERS.get(adapter, "o"), label=adapter
            )
        frontier = pareto_frontier([p for pts in placed.values() for p in pts])
        ax.step(
            *zip(*frontier, strict=True),
            where="post",
            color="grey",
            linestyle="--",
            linewidth=1,
            label="Pareto frontier",
        )
        if finite:
            ax.set_xscale("log")
        if len(finite) < sum(len(p) for p in curves.values()):
            ax.axvline(right, color="grey", linestyle=":", linewidth=1)
            ax.annotate(
                "no DP",
                (right, 0.02),
                xycoords=("data", "axes fraction"),
                rotation=90,
                color="grey",
                ha="right",
            )
        ax.set_xlabel("epsilon (largest over institutions)")
        ax.set_ylabel(f"federated pooled {task_rows[0]['metric']}")
        ax.set_title(task)
        ax.legend(fontsize="small")
    fig.suptitle("Privacy against accuracy, per adapter", y=1.02)
    return fig


def accuracy_vs_energy(rows: list[Row]) -> plt.Figure | None:
    rows = [r for r in rows if r.get("energy_wh") is not None]
    if not rows:
        return None
    tasks = _by_task(rows)
    fig, axes = _panels(len(tasks))
    for ax, (task, task_rows) in zip(axes, tasks.items(), strict=True):
        for adapter in sorted({r["adapter"] for r in task_rows}):
            mine = [r for r in task_rows if r["adapter"] == adapter]
            ax.scatter(
                [r["energy_wh"] for r in mine],
                [r["federated"] for r in mine],
                marker=ADAPTER_MARKERS.get(adapter, "o"),
                label=adapter,
            )
            for r in mine:
                ax.annotate(
                    _eps_label(r["eps_max"]),
                    (r["energy_wh"], r["federated"]),
                    fontsize="x-small",
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        kinds = sorted({r["energy_kind"] for r in task_rows})
        ax.set_xlabel(f"energy per run (Wh; {', '.join(kinds)})")
        ax.set_ylabel(f"federated pooled {task_rows[0]['metric']}")
        ax.set_title(task)
        ax.legend(fontsize="small")
    fig.suptitle("Energy against accuracy, per adapter", y=1.02)
    return fig


def federated_vs_baselines(rows: list[Row]) -> plt.Figure:
    tasks = _by_task(rows)
    widest = max(len(r) for r in tasks.values())
    fig, axes = _panels(len(tasks), width=max(5.2, 0.9 * widest + 1.5))
    for ax, (task, task_rows) in zip(axes, tasks.items(), strict=True):
        labels = [r["cell"].rsplit("-", 1)[0].replace("_", "\n") for r in task_rows]  # the slug
        bar = 0.8 / len(TRAININGS)
        for i, training in enumerate(TRAININGS):
            xs = [j + (i - 1) * bar for j in range(len(task_rows))]
            ys = [r.get(training) if r.get(training) is not None else 0.0 for r in task_rows]
            ax.bar(xs, ys, width=bar, label=training, color=TRAINING_COLOURS[training])
        ax.set_xticks(range(len(task_rows)), labels, fontsize="x-small")
        ax.set_ylabel(f"pooled {task_rows[0]['metric']}")
        ax.set_title(task)
        ax.legend(fontsize="small")
    fig.suptitle("Federated against centralized and isolated", y=1.02)
    return fig
