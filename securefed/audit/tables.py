"""Cells and tables of the Markdown view: one formatting rule for every figure."""

from __future__ import annotations

import math

from securefed.run.intervals import wilson_interval


def fmt(value: object, digits: int = 4) -> str:
    """A cell: numbers to ``digits`` significant figures, infinity as ∞, absent left empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return {"inf": "∞", "-inf": "-∞", "nan": "NaN"}[value]
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.{digits}g}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) if value else "none"
    if isinstance(value, dict):
        shown = [f"{k} {fmt(v)}" for k, v in value.items() if v is not None]
        return ", ".join(shown) if shown else "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; a column no row has a value in is left out."""
    keep = [i for i in range(len(header)) if i == 0 or any(r[i] is not None for r in rows)]
    if rows:
        header = [header[i] for i in keep]
        rows = [[r[i] for i in keep] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def present(rows: list[list[object]]) -> list[list[object]]:
    """The rows that hold a value beyond their label: a missing figure is left out, not shown
    as a blank line."""
    return [row for row in rows if any(cell is not None for cell in row[1:])]


def with_interval(value: object, n: int | None, metric: str = "accuracy") -> str:
    """An accuracy on a test split as the audit shows it: three decimals, its Wilson 95%
    interval and the split's size (other metrics, or no size recorded: the figure alone)."""
    if not isinstance(value, float | int) or isinstance(value, bool):
        return fmt(value)
    if metric != "accuracy" or not n:
        return f"{value:.3f}"
    low, high = wilson_interval(float(value), n)
    return f"{value:.3f} (95% CI {low:.3f}-{high:.3f}, n={n})"
