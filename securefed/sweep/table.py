"""The sweep table: one row per cell, read back from the cells' run folders alone.

Every figure comes from files a run writes (``results.json``, ``metrics.jsonl``,
``energy.json``, ``partition.json``), so the table of a resumed sweep equals that of an
uninterrupted one, and ``table.csv`` can be rebuilt at any time from the folders.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from securefed.privacy.display import epsilon_text
from securefed.run.contract import read_record
from securefed.run.folder import ENERGY, PARTITION, RESULTS, STATE, RunFolder
from securefed.tasks.partition import majority_class

MB = 1024 * 1024
# Each training a run may report, read from results.json's block of that name (None when off).
TRAININGS = ("federated", "centralized", "isolated", "zero_shot")
TAIL_ROUNDS = 5  # federated_tail: how many final rounds' pooled metrics it averages
# (column, what it holds) after the swept keys; the Markdown legend is built from this.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "done | failed | incomplete (resumable) | pending"),
    ("task", "task name"),
    ("adapter", "lora | qlora | ia3"),
    ("metric", "the task's primary metric, pooled over every institution's test split"),
    ("federated", "federated model after the last round"),
    (
        "federated_tail",
        f"federated, mean of the last {TAIL_ROUNDS} rounds evaluated (one round's figure swings)",
    ),
    ("centralized", "one model on the pooled data, same step budget"),
    ("isolated", "each institution alone, mean over institutions"),
    ("zero_shot", "the backbone before any fine-tuning, scored the same way"),
    ("majority", "accuracy of always answering the most common test label (the floor)"),
    ("eps_max", "largest epsilon spent by an institution (inf: non-private)"),
    ("eps_mean", "mean epsilon over institutions"),
    ("trainable_params", "adapter parameters that train and travel"),
    ("upload_bytes", "bytes sent per client per round (mean)"),
    ("download_bytes", "bytes received per client per round (mean)"),
    ("peak_rss_mb", "peak host memory of the run (MiB)"),
    ("peak_gpu_mb", "peak GPU memory allocated (MiB)"),
    ("wall_s", "wall time, all invocations of the run"),
    ("cpu_s", "process CPU time"),
    ("round_cpu_s", "CPU time per federated round, mean over the rounds (metrics.jsonl)"),
    ("gpu_s", "GPU elapsed time (CUDA events)"),
    ("energy_wh", "energy (Wh), see energy_kind"),
    ("energy_kind", "measured | partly measured | estimate (see energy.json basis)"),
    (
        "resumed",
        "the run was interrupted and resumed: energy.json lacks the interrupted invocation "
        "(its time and energy), round_cpu_s does not",
    ),
)
EPSILON_COLUMNS = frozenset(name for name, _ in COLUMNS if name.startswith("eps_"))
TERMINAL_HEADERS = {
    "federated": "fed.",
    "centralized": "central.",
    "isolated": "isol.",
    "majority": "floor",
    "eps_max": "eps max",
    "peak_rss_mb": "RSS MiB",
    "energy_wh": "Wh",
}
SUMMARY_COLUMNS = (
    "federated",
    "centralized",
    "isolated",
    "majority",
    "eps_max",
    "peak_rss_mb",
    "energy_wh",
)


@dataclass(frozen=True)
class SweepTable:
    """Rows (dicts) and their columns: the swept keys first, then ``COLUMNS``."""

    swept_keys: tuple[str, ...]
    rows: list[dict[str, Any]]

    @property
    def columns(self) -> list[str]:
        return ["cell", *self.swept_keys, *(name for name, _ in COLUMNS)]

    def done_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "done"]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in self.columns})
        return buffer.getvalue()

    def to_markdown(self, title: str) -> str:
        lines = [
            f"# {title}",
            "",
            "| " + " | ".join(self.columns) + " |",
            "|" + "|".join("---" for _ in self.columns) + "|",
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(_short(row.get(k), k) for k in self.columns) + " |")
        lines += ["", "Columns:", ""]
        lines += [f"- `{name}`: {meaning}" for name, meaning in COLUMNS]
        return "\n".join(lines) + "\n"

    def print(self, console: Console) -> None:
        """The summary on the terminal, readable at 100 columns: the cell id stands for its
        swept values (their own columns are in ``table.csv`` and ``table.md``), headers are
        short, numbers never wrap; only a long cell id folds onto a second line."""
        table = Table(title="sweep", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("cell", overflow="fold", ratio=1)
        table.add_column("status", no_wrap=True)
        for name in SUMMARY_COLUMNS:
            table.add_column(TERMINAL_HEADERS[name], justify="right", no_wrap=True)
        for row in self.rows:
            table.add_row(
                str(row.get("cell")),
                str(row.get("status")),
                *(_short(row.get(k), k, digits=3) for k in SUMMARY_COLUMNS),
            )
        console.print(table)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | list | dict):
        return json.dumps(value)
    return value


def _short(value: Any, column: str, digits: int = 4) -> str:
    """A cell of the Markdown and terminal tables; epsilons rounded up (``epsilon_text``)."""
    if value is None:
        return "-"
    if column in EPSILON_COLUMNS:
        return str(epsilon_text(value, digits, infinity="inf"))
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if abs(value) >= 10**digits:  # 1235, not 1.23e+03
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


# ---- reading one cell ------------------------------------------------------------------------
def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _pooled(results: dict, training: str, metric: str) -> float | None:
    block = results.get(training) or {}
    pooled = block.get("pooled")
    return float(pooled[metric]) if pooled and metric in pooled else None


def _epsilons(results: dict) -> list[float]:
    clients = results.get("privacy", {}).get("clients", {})
    return [float(c["epsilon"]) for c in clients.values() if c.get("epsilon") is not None]


def _bytes_per_client_round(metrics: list[dict]) -> tuple[float | None, float | None]:
    entries = [v for record in metrics for v in (record.get("bytes") or {}).values()]
    if not entries:
        return None, None
    up = sum(e.get("up", 0) for e in entries) / len(entries)
    down = sum(e.get("down", 0) for e in entries) / len(entries)
    return up, down


def _tail_mean(metrics: list[dict], metric: str) -> float | None:
    """The pooled ``metric`` averaged over the last ``TAIL_ROUNDS`` rounds that evaluated."""
    values = [
        float(r["eval"]["pooled"][metric])
        for r in metrics
        if metric in ((r.get("eval") or {}).get("pooled") or {})
    ][-TAIL_ROUNDS:]
    return sum(values) / len(values) if values else None


def _round_cpu(metrics: list[dict]) -> float | None:
    """CPU seconds per federated round, averaged over the rounds that recorded it."""
    values = [float(r["cpu_s"]) for r in metrics if r.get("cpu_s") is not None]
    return sum(values) / len(values) if values else None


def _status(cell_dir: Path) -> str:
    if (cell_dir / RESULTS).is_file():
        return "done"
    if (cell_dir / "error.txt").is_file():
        return "failed"
    return "incomplete" if (cell_dir / STATE).is_file() else "pending"


def cell_row(cell_dir: Path, cell_id: str, swept: dict[str, Any]) -> dict[str, Any]:
    """The table row of one cell (metrics empty unless the cell is done)."""
    row: dict[str, Any] = {"cell": cell_id, **swept, "status": _status(cell_dir)}
    results = read_record(cell_dir, RESULTS)
    if results is None:
        return row
    metric = results["task"]["primary_metric"]
    eps = _epsilons(results)
    records = RunFolder(cell_dir).read_metrics()
    up, down = _bytes_per_client_round(records)
    row.update(
        {
            "task": results["task"]["name"],
            "adapter": results["adapter"],
            "metric": metric,
            **{t: _pooled(results, t, metric) for t in TRAININGS},
            "federated_tail": _tail_mean(records, metric),
            "round_cpu_s": _round_cpu(records),
            "majority": majority_class(_read(cell_dir / PARTITION) or {})["pooled"],
            "eps_max": max(eps) if eps else None,
            "eps_mean": sum(eps) / len(eps) if eps else None,
            "trainable_params": results["trainable_parameters"],
            "upload_bytes": up,
            "download_bytes": down,
            "resumed": (results.get("timing") or {}).get("resumed"),
        }
    )
    energy = _read(cell_dir / ENERGY)
    if energy is not None:
        total = energy["total"]
        row.update(
            {
                "peak_rss_mb": total["peak_rss_bytes"] / MB,
                "peak_gpu_mb": (
                    total["peak_gpu_memory_bytes"] / MB
                    if total["peak_gpu_memory_bytes"] is not None
                    else None
                ),
                "wall_s": total["wall_s"],
                "cpu_s": total["cpu_s"],
                "gpu_s": total["gpu_elapsed_s"],
                "energy_wh": total["energy_wh"],
                "energy_kind": total["energy_kind"],
            }
        )
    return row


# ---- the whole sweep -------------------------------------------------------------------------
def collect_table(sweep_dir: Path, cells: list[tuple[str, dict[str, Any]]]) -> SweepTable:
    """The table of the planned ``cells`` (id, swept values) under ``sweep_dir/cells``."""
    swept_keys: list[str] = []
    for _, swept in cells:
        swept_keys += [k for k in swept if k not in swept_keys]
    rows = [cell_row(sweep_dir / "cells" / cell_id, cell_id, swept) for cell_id, swept in cells]
    return SweepTable(tuple(swept_keys), rows)


def write_sweep_outputs(sweep_dir: Path, cells: list[tuple[str, dict[str, Any]]]) -> SweepTable:
    """Write ``table.csv``, ``table.md`` and ``plots/*.png``; returns the table."""
    from securefed.sweep.plots import write_plots  # lazy: matplotlib only when plotting

    table = collect_table(sweep_dir, cells)
    (sweep_dir / "table.csv").write_text(table.to_csv())
    title = f"Sweep {sweep_dir.name}: {len(table.done_rows())} of {len(table.rows)} cells done"
    (sweep_dir / "table.md").write_text(table.to_markdown(title))
    write_plots(table.done_rows(), sweep_dir / "plots")
    return table
