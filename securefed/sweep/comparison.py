"""The findings of a backbone x adapter x task grid (``configs/sweeps/llm_grid.yaml``), read off
its table alone: per backbone, task and adapter, federated against centralized, isolated,
zero-shot and the majority floor; per adapter on each backbone, what it costs (trainable
parameters, peak memory, CPU time per federated round, energy) and at what accuracy, against
LoRA on the same cells; which cells are missing and the command that resumes them.

"Comparable to centralized" is a stated rule: federated within ``COMPARABLE_POINTS`` points of
centralized, above or below, in every seed done (a seed fixes the records and the split, so the
two arms pair up within a cell).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean
from typing import Any

from securefed.sweep.heterogeneity import provenance, spread
from securefed.sweep.table import TRAININGS, SweepTable

BACKBONE_KEY = "model.backbone"
ADAPTER_KEY = "model.adapter"
COMPARABLE_POINTS = 5.0
REFERENCE_ADAPTER = "lora"  # the cost ratios are against it, on the cells both ran
# What an interrupted invocation leaves out of a resumed cell's record (its energy.json)
WHOLE_CELL = frozenset({"cpu_s", "energy_wh", "wall_s"})
ARMS = (("centralized", "centralized"), ("isolated", "isolated"), ("zero_shot", "zero-shot"))
Row = dict[str, Any]


def is_comparison_sweep(swept_keys: tuple[str, ...]) -> bool:
    """A sweep that varies the backbone and the adapter together."""
    return BACKBONE_KEY in swept_keys and ADAPTER_KEY in swept_keys


def backbone_label(row: Row) -> str:
    return str(row.get(BACKBONE_KEY) or "base backbone").removeprefix("embedded:")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gaps(rows: list[Row], arm: str) -> list[float]:
    """Federated minus ``arm`` in points, one per seed that has both."""
    return [100 * (r["federated"] - r[arm]) for r in rows if r.get(arm) is not None]


def _points(gaps: list[float]) -> str:
    return "-" if not gaps else f"{mean(gaps):+.1f}"


def _mean(rows: list[Row], key: str) -> float | None:
    """The mean of ``key`` over ``rows``; a whole-cell figure over the cells never resumed."""
    values = [
        r[key]
        for r in rows
        if r.get(key) is not None and not (key in WHOLE_CELL and r.get("resumed"))
    ]
    return mean(values) if values else None


def _groups(rows: list[Row]) -> dict[tuple[str, str], dict[str, list[Row]]]:
    """(backbone, task) -> adapter -> the done rows (one per seed), in table order."""
    groups: dict[tuple[str, str], dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(backbone_label(row), row["task"])][row["adapter"]].append(row)
    return groups


def centralized_verdict(rows: list[Row]) -> str:
    """Whether federated is comparable to centralized by the rule, with the gap it rests on."""
    gaps = _gaps(rows, "centralized")
    if not gaps:
        return "no centralized arm"
    seeds = f" (seeds {min(gaps):+.1f} to {max(gaps):+.1f})" if len(gaps) > 1 else ""
    gap = f"{mean(gaps):+.1f} points{seeds}"
    if min(gaps) < -COMPARABLE_POINTS:
        return f"not comparable to centralized: below it, {gap}"
    if max(gaps) > COMPARABLE_POINTS:
        return f"not comparable to centralized: above it, {gap}"
    return f"comparable to centralized, {gap}"


def _side(gaps: list[float], name: str) -> str:
    if not gaps:
        return f"no {name} arm"
    value = mean(gaps)
    where = "above" if value > 0 else "below" if value < 0 else "level with"
    return f"{abs(value):.1f} points {where} {name}"


def _arms_section(groups) -> list[str]:
    lines = [
        "## Federated against centralized, isolated and zero-shot",
        "",
        "Pooled accuracy on every institution's test split: mean over the seeds done "
        "(lowest-highest); the gaps are federated minus each arm in points, the mean of the "
        "seeds' gaps; floor: always answering the most common test label.",
        "",
        "| backbone | task | adapter | seeds | federated | centralized | isolated | zero-shot "
        "| floor | minus centralized | minus isolated | minus zero-shot | minus floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for (backbone, task), by_adapter in sorted(groups.items()):
        for adapter, rows in sorted(by_adapter.items()):
            values = {
                arm: [r[arm] for r in rows if r.get(arm) is not None]
                for arm in (*TRAININGS, "majority")
            }
            lines.append(
                f"| {backbone} | {task} | {adapter} | {len(rows)} | "
                + " | ".join(spread(v) for v in values.values())
                + " | "
                + " | ".join(_points(_gaps(rows, arm)) for arm in (*dict(ARMS), "majority"))
                + " |"
            )
            verdicts.append(
                f"- {backbone}, {task}, {adapter}: federated is {centralized_verdict(rows)}; "
                + "; ".join(_side(_gaps(rows, arm), name) for arm, name in ARMS[1:])
                + f"; {_side(_gaps(rows, 'majority'), 'the floor')}."
            )
    rule = (
        f"Comparable to centralized means within {COMPARABLE_POINTS:g} points of it, above or "
        "below, in every seed done; a centralized arm far below federated is a weak arm (one "
        "optimizer on the pooled records), not a federated win to generalise."
    )
    return [*lines, "", rule, "", *verdicts, ""]


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference == 0:
        return "-"
    return f"{value / reference:.2f}x"


def _against_reference(backbone: str, adapter: str, rows: list[Row], reference: list[Row]):
    """One adapter against the reference on the cells both ran (same task and seed)."""
    theirs = {(r["task"], r.get("seed")): r for r in reference}
    pairs = [
        (r, theirs[(r["task"], r.get("seed"))])
        for r in rows
        if (r["task"], r.get("seed")) in theirs
    ]
    if not pairs:
        return f"- {backbone}, {adapter}: no cell shared with {REFERENCE_ADAPTER}"
    whole = [(a, b) for a, b in pairs if not (a.get("resumed") or b.get("resumed"))]
    parts = [
        f"{label} {_ratio(*_pair_means(whole if key in WHOLE_CELL else pairs, key))}"
        for key, label in (
            ("trainable_params", "trainable parameters"),
            ("peak_rss_mb", "peak memory"),
            ("round_cpu_s", "CPU-s per federated round"),
            ("cpu_s", "CPU-s for the whole cell"),
            ("energy_wh", "energy"),
        )
    ]
    gap = mean(100 * (a["federated"] - b["federated"]) for a, b in pairs)
    return (
        f"- {backbone}, {adapter} against {REFERENCE_ADAPTER} on the {len(pairs)} cell(s) both "
        f"ran: " + ", ".join(parts) + f"; federated accuracy {gap:+.1f} points."
    )


def _pair_means(pairs: list[tuple[Row, Row]], key: str) -> tuple[float | None, float | None]:
    return _mean([a for a, _ in pairs], key), _mean([b for _, b in pairs], key)


def _cost_section(rows: list[Row]) -> list[str]:
    by_backbone: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_backbone[backbone_label(row)][row["adapter"]].append(row)
    lines = [
        "## What each adapter costs, per backbone",
        "",
        "Means over the adapter's cells done on that backbone (both tasks, every seed), from "
        "each cell's energy record: peak host memory of the whole cell (model load, prefix "
        "cache and all four arms), CPU seconds per federated round (all institutions' local "
        "steps, secure aggregation and the evaluation) and for the whole cell. A cell "
        "interrupted and resumed has no whole-cell CPU-s or energy (its record lacks the "
        "interrupted invocation): those means and ratios leave it out.",
        "",
        "| backbone | adapter | cells | trainable params | peak RSS MiB | CPU-s per federated "
        "round | CPU-s per cell | energy Wh per cell | federated accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    comparisons = []
    for backbone, by_adapter in sorted(by_backbone.items()):
        for adapter, mine in sorted(by_adapter.items()):
            lines.append(
                f"| {backbone} | {adapter} | {len(mine)} "
                f"| {_fmt(_mean(mine, 'trainable_params'), 0)} "
                f"| {_fmt(_mean(mine, 'peak_rss_mb'), 0)} | {_fmt(_mean(mine, 'round_cpu_s'), 1)} "
                f"| {_fmt(_mean(mine, 'cpu_s'), 0)} | {_fmt(_mean(mine, 'energy_wh'))} "
                f"| {_fmt(_mean(mine, 'federated'))} |"
            )
            if adapter != REFERENCE_ADAPTER and by_adapter.get(REFERENCE_ADAPTER):
                comparisons.append(
                    _against_reference(backbone, adapter, mine, by_adapter[REFERENCE_ADAPTER])
                )
    intro = [f"Against {REFERENCE_ADAPTER} on the same backbone (ratios below 1 save):", ""]
    resumed = [r["cell"] for r in rows if r.get("resumed")]
    note = ["Resumed: " + ", ".join(f"`{c}`" for c in resumed) + ".", ""] if resumed else []
    return [*lines, "", *note, *([*intro, *comparisons, ""] if comparisons else [])]


def _cpu_section(rows: list[Row]) -> list[str]:
    """Where these CPU figures cannot speak for a GPU; the energy basis read from the table."""
    kinds = sorted({r.get("energy_kind") or "not recorded" for r in rows})
    ratios = [r["wall_s"] / r["cpu_s"] for r in rows if r.get("wall_s") and r.get("cpu_s")]
    lines = [
        "## What these CPU figures cannot say about a GPU",
        "",
        "- QLoRA runs through bitsandbytes' CPU 4-bit path: "
        "the frozen weights are stored in 4 bits and dequantized in software for each matrix "
        "product, where a GPU runs fused CUDA kernels. Its CPU time says nothing about its "
        "speed on a GPU, and peak host memory here counts the whole process (the model load, "
        "the frozen-prefix cache, all four arms), not the GPU memory the weights would hold.",
        "- The frozen layers compute in bfloat16 on this CPU's own matrix units; the ratio of "
        "an adapter's cost to another's on a GPU's tensor cores need not be the same.",
        f"- Energy: {', '.join(kinds)} (the basis is in each cell's energy.json): CodeCarbon "
        "models CPU and RAM power, it measures neither.",
    ]
    if ratios:
        ratio_range = (
            f"ranges from {min(ratios):.2f} to {max(ratios):.2f} across cells"
            if len(ratios) > 1
            else f"is {ratios[0]:.2f}"
        )
        busiest = 1 / min(ratios)  # the most CPU-s per wall second
        lines += [
            f"- Wall time per CPU second {ratio_range} (wall time also counts waiting for "
            "whatever else ran on the machine): compare cells by CPU-s, not by wall time; "
            "modelled energy has terms that grow with wall time.",
            f"- The busiest cell kept {busiest:.2f} cores busy on average (its CPU-s over its "
            "wall time).",
        ]
    return [*lines, ""]


def comparison_findings(
    table: SweepTable, shrunk: dict, base: str | None = None, resume: str | None = None
) -> str:
    """FINDINGS.md of a backbone x adapter x task grid: every number read from ``table``;
    ``resume`` is the command that finishes the missing cells."""
    rows = [r for r in table.done_rows() if r.get("federated") is not None]
    missing = [r["cell"] for r in table.rows if r["status"] != "done"]
    lines = [
        "# Backbone x adapter x task grid: findings",
        "",
        *provenance(shrunk, base),
        "",
        f"{len(rows)} of {len(table.rows)} cells done.",
        "",
        *_arms_section(_groups(rows)),
        *_cost_section(rows),
        *_cpu_section(rows),
    ]
    if missing:
        lines += [
            "## Missing cells",
            "",
            f"{len(missing)} cells not yet run"
            + (f"; `{resume}` runs them (finished cells are kept)" if resume else "")
            + ":",
            "",
            *(f"- `{cell}`" for cell in missing),
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"
