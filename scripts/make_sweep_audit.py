"""Regenerate ``audits/sweeps/``: the CPU privacy-utility sweep, its table, plots and findings
(a heterogeneity sweep's findings: ``securefed.sweep.heterogeneity``; a backbone x adapter
grid's: ``securefed.sweep.comparison``).

    python scripts/make_sweep_audit.py [--workers 2] [--sweep configs/sweeps/cpu_eps_adapters.yaml]

The sweep runs in ``runs/sweeps/<name>`` (resumable: rerun after an interruption and
finished cells are kept); the table, plots, plan and a findings page computed from the
table are copied to ``audits/sweeps/``, with each finished cell's record under
``audits/sweeps/cells/<id>/`` (its config, results, per-round metrics, partition, energy and
privacy ledgers: what the table is read from, and what recomputes each epsilon). Checkpoints
and secure-aggregation transcripts are not copied.

A sweep longer than one sitting resumes on another machine from what was committed: cells
recorded under ``audits/sweeps/cells/`` and missing from the work folder are copied back into
it before the sweep runs, and count as done. ``--collect`` runs nothing and writes the outputs
of the cells done so far (the findings say which are missing).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

from rich.console import Console

from securefed.audit.report import MAJORITY_MARGIN, at_majority_floor
from securefed.run.folder import RESULTS
from securefed.sweep import load_spec, plan_cells, run_sweep
from securefed.sweep.comparison import comparison_findings, is_comparison_sweep
from securefed.sweep.heterogeneity import (
    heterogeneity_findings,
    is_heterogeneity_sweep,
    provenance,
)
from securefed.sweep.table import SweepTable

ROOT = Path(__file__).resolve().parent.parent
EPS_KEY = "privacy.dp.target_epsilon"
# What a finished cell's row and epsilons are read from (securefed.sweep.table.cell_row).
CELL_RECORD = (
    "config.yaml",
    "results.json",
    "metrics.jsonl",
    "partition.json",
    "energy.json",
    "privacy/ledgers.json",
)


def _copy_record(source: Path, target: Path) -> None:
    """Copy one cell's record (``CELL_RECORD``, the files it has) from ``source`` to ``target``."""
    for name in CELL_RECORD:
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def restore_cells(recorded: Path, work: Path, cell_ids: list[str]) -> list[str]:
    """Copy each of ``cell_ids`` recorded as finished under ``recorded`` (an earlier
    ``audits/sweeps/cells``) and not finished in ``work/cells`` into it; the ids restored."""
    restored = []
    for cell_id in cell_ids:
        target = work / "cells" / cell_id
        if (recorded / cell_id / RESULTS).is_file() and not (target / RESULTS).is_file():
            _copy_record(recorded / cell_id, target)
            restored.append(cell_id)
    return restored


def publish_cells(work: Path, out: Path, cell_ids: list[str]) -> None:
    """Copy each finished cell's record (``CELL_RECORD``) to ``out/<id>/``."""
    for cell_id in cell_ids:
        _copy_record(work / "cells" / cell_id, out / cell_id)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def _eps_order(row: dict) -> float:
    target = row.get(EPS_KEY)
    return math.inf if target is None else float(target)


def findings(table: SweepTable, shrunk: dict, base: str | None = None) -> str:
    """Facts read off the table: the curves per adapter, memory, and cost per accuracy point."""
    rows = table.done_rows()
    by_adapter: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_adapter[row["adapter"]].append(row)
    metric = rows[0]["metric"] if rows else "accuracy"
    targets = _targets(rows)
    missing = [r["cell"] for r in table.rows if r["status"] != "done"]
    lines = [
        "# CPU privacy-utility sweep: findings",
        "",
        *provenance(shrunk, base),
        "",
        *(
            [
                f"**Incomplete: {len(rows)} of {len(table.rows)} cells done.** Not yet run: "
                + ", ".join(f"`{c}`" for c in missing)
                + ". Rerun the script to finish them.",
                "",
            ]
            if missing
            else []
        ),
        f"## Federated pooled {metric} by target epsilon",
        "",
        "Mean over the seeds that ran, with the lowest and highest seed in brackets.",
        "",
        "| adapter | "
        + " | ".join(f"eps {_fmt(e)}" if math.isfinite(e) else "non-private" for e in targets)
        + " | non-private minus best private (points) |",
        "|---" * (len(targets) + 2) + "|",
    ]
    # each adapter's rows at each target epsilon (its seeds), their metric values, and the mean
    cells = {
        a: {e: [r for r in mine if _eps_order(r) == e] for e in targets}
        for a, mine in by_adapter.items()
    }
    seeds = {a: {e: _values(c) for e, c in at.items()} for a, at in cells.items()}
    means = {
        a: {e: sum(v) / len(v) if v else None for e, v in at.items()} for a, at in seeds.items()
    }
    for adapter in sorted(cells):
        public = means[adapter].get(math.inf)
        private = [v for e, v in means[adapter].items() if math.isfinite(e) and v is not None]
        drop = 100 * (public - max(private)) if public is not None and private else None
        lines.append(
            f"| {adapter} | "
            + " | ".join(_spread(cells[adapter][e]) for e in targets)
            + f" | {_fmt(drop)} |"
        )
    lines += [
        "",
        *_curves(means, seeds, targets),
        "",
        *_best_adapters(means, seeds, targets, metric),
    ]
    floors = sorted({r["majority"] for r in rows if r.get("majority") is not None})
    at_floor = [
        r["cell"]
        for r in rows
        if r.get("majority") is not None and at_majority_floor(r["federated"], r["majority"])
    ]
    lines += [
        "",
        f"Majority-class floor (always answering the most common pooled test label): "
        f"{', '.join(_fmt(f) for f in floors) or '-'}. Cells whose federated {metric} is within "
        f"{100 * MAJORITY_MARGIN:.0f} points of it learned little or nothing: "
        f"{', '.join(f'`{c}`' for c in at_floor) or 'none'}.",
    ]
    lines += [
        "",
        "## Cost per adapter",
        "",
        "Non-private cell unless marked DP (mean over the adapter's DP cells). The gain is "
        f"federated minus isolated pooled {metric}: what joining the federation bought.",
        "",
        "| adapter | trainable params | peak RSS MiB | peak RSS MiB (DP) | CPU s | CPU s (DP) "
        "| energy Wh | gain over isolated (points) | Wh per point gained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for adapter, mine in sorted(by_adapter.items()):
        public = [r for r in mine if math.isinf(_eps_order(r))]
        private = [r for r in mine if not math.isinf(_eps_order(r))]
        gain = None
        if public and _mean(public, "isolated") is not None:
            gain = 100 * (_mean(public, "federated") - _mean(public, "isolated"))
        energy = _mean(public, "energy_wh")
        per_point = energy / gain if gain and gain > 0 and energy is not None else None
        lines.append(
            f"| {adapter} | {mine[0]['trainable_params']} "
            f"| {_fmt(_mean(public, 'peak_rss_mb'), 4)} "
            f"| {_fmt(_mean(private, 'peak_rss_mb'), 4)} | {_fmt(_mean(public, 'cpu_s'), 4)} "
            f"| {_fmt(_mean(private, 'cpu_s'), 4)} | {_fmt(energy)} | {_fmt(gain)} "
            f"| {_fmt(per_point) if per_point is not None else _no_gain(gain)} |"
        )
    kinds = sorted({r.get("energy_kind") or "not recorded" for r in rows})
    lines += ["", f"Energy kind: {', '.join(kinds)} (the basis is in each cell's energy.json)."]
    ratios = [r["wall_s"] / r["cpu_s"] for r in rows if r.get("wall_s") and r.get("cpu_s")]
    if ratios and max(ratios) > 1.5 * min(ratios):
        lines.append(
            f"Wall time per CPU second ranges from {min(ratios):.2f} to {max(ratios):.2f} across "
            "cells: they ran at different machine load. Modelled energy has terms that scale "
            "with wall time (CodeCarbon's constant RAM power), so compare cells by CPU s, "
            "not by energy, unless the sweep reran on a quiet machine."
        )
    lines.append("")
    return "\n".join(lines)


def _base_name(sweep_file: Path, base: str | dict | None) -> str | None:
    """The sweep's base config as the findings name it: its path in the repository, or inline."""
    if base is None:
        return None
    if isinstance(base, dict):
        return "an inline base config"
    path = (sweep_file.parent / base).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _label(epsilon: float) -> str:
    return f"epsilon {_fmt(epsilon)}" if math.isfinite(epsilon) else "non-private"


def _curves(
    means: dict[str, dict[float, float | None]],
    seeds: dict[str, dict[float, list[float]]],
    targets: list[float],
) -> list[str]:
    """Whether each adapter's mean falls as epsilon falls, and where it does not."""
    lines = ["Does each curve fall with epsilon (means, from non-private down)?", ""]
    for adapter in sorted(means):
        points = [(e, means[adapter][e]) for e in targets if means[adapter].get(e) is not None]
        rises = [
            f"rises {100 * (v2 - v1):.1f} points from {_label(e1)} to {_label(e2)}"
            + _beside(seeds[adapter][e1], seeds[adapter][e2])
            for (e1, v1), (e2, v2) in pairwise(points)
            if v2 > v1
        ]
        path = " > ".join(_fmt(v) for _, v in points)
        if len(points) < 2:
            lines.append(f"- {adapter}: {path}: one epsilon done, no curve yet")
            continue
        lines.append(f"- {adapter}: {path}: " + ("; ".join(rises) or "falls at every step"))
    return lines


def _best_adapters(
    means: dict[str, dict[float, float | None]],
    seeds: dict[str, dict[float, list[float]]],
    targets: list[float],
    metric: str,
):
    """Which adapter to pick at each epsilon: the highest mean, and its lead over the next."""
    if len(means) < 2:
        return []
    lines = [f"Which adapter at which epsilon (highest mean federated {metric}):", ""]
    for e in targets:
        at_e = ((at[e], adapter) for adapter, at in means.items() if at[e] is not None)
        ranked = sorted(at_e, reverse=True)
        if len(ranked) < 2:
            continue
        (best, name), (second, other) = ranked[0], ranked[1]
        lines.append(
            f"- {_label(e)}: {name} ({_fmt(best)}), "
            f"{100 * (best - second):.1f} points above {other}"
            + _beside(seeds[other][e], seeds[name][e])
        )
    return lines


def _beside(lower: list[float], higher: list[float]) -> str:
    """Whether a higher mean stands clear of the seeds' spread: the two seed ranges overlap or
    not. Says nothing when either side has a single seed (no spread to judge by)."""
    if len(lower) < 2 or len(higher) < 2:
        return ""
    ranges = (
        f"{_fmt(min(higher))}-{_fmt(max(higher))} against {_fmt(min(lower))}-{_fmt(max(lower))}"
    )
    if min(higher) <= max(lower):
        return f", within the seeds' spread ({ranges})"
    return f", beyond the seeds' spread ({ranges})"


def _values(cells: list[dict]) -> list[float]:
    """The federated metric of each seed of a cell that has one."""
    return [r["federated"] for r in cells if r.get("federated") is not None]


def _spread(cells: list[dict]) -> str:
    """Mean federated metric over a cell's seeds, with their range when there are several."""
    values = _values(cells)
    if len(values) < 2:
        return _fmt(values[0]) if values else "-"
    return f"{_fmt(_mean(cells, 'federated'))} ({_fmt(min(values))}-{_fmt(max(values))})"


def _no_gain(gain: float | None) -> str:
    return "no isolated baseline" if gain is None else "no gain"


def _targets(rows: list[dict]) -> list[float]:
    return sorted({_eps_order(r) for r in rows}, reverse=True)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def resume_command(sweep: Path, out: Path) -> str:
    """The command that finishes a sweep's missing cells, paths relative to the repository."""

    def shown(path: Path) -> str:
        path = path.resolve()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)

    return (
        f"python scripts/make_sweep_audit.py --sweep {shown(sweep)} --out {shown(out)} --workers 1"
    )


def write_findings(table: SweepTable, spec, sweep: Path, out: Path) -> str:
    """FINDINGS.md of the sweep's kind: a partition or optimizer sweep picks an optimizer, a
    backbone x adapter grid compares the arms and the adapters' costs, an epsilon sweep draws
    its curves."""
    base = _base_name(sweep, spec.base)
    if is_heterogeneity_sweep(table.swept_keys):
        return heterogeneity_findings(table, spec.set, base)
    if is_comparison_sweep(table.swept_keys):
        return comparison_findings(table, spec.set, base, resume_command(sweep, out))
    return findings(table, spec.set, base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(ROOT / "configs/sweeps/cpu_eps_adapters.yaml"))
    parser.add_argument("--workers", type=int, default=2, help="parallel cells (1 thread each)")
    parser.add_argument("--work-dir", help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--out", default=str(ROOT / "audits/sweeps"))
    parser.add_argument(
        "--collect", action="store_true", help="run nothing: the outputs of the cells done so far"
    )
    args = parser.parse_args(argv)

    spec, base = load_spec(args.sweep)
    work = Path(args.work_dir) if args.work_dir else ROOT / "runs/sweeps" / spec.name
    out = Path(args.out)
    restored = restore_cells(out / "cells", work, [c.id for c in plan_cells(spec, base)])
    if restored:
        print(f"{len(restored)} finished cells restored from {out / 'cells'}", file=sys.stderr)
    result = run_sweep(
        args.sweep,
        out=work,
        workers=args.workers,
        console=Console(stderr=True),
        run=not args.collect,
    )
    if out.exists():
        shutil.rmtree(out)
    (out / "plots").mkdir(parents=True)
    publish_cells(work, out / "cells", [r["cell"] for r in result.table.done_rows()])
    for name in ("table.csv", "table.md", "sweep.json"):
        shutil.copy2(work / name, out / name)
    for png in sorted((work / "plots").glob("*.png")):
        shutil.copy2(png, out / "plots" / png.name)
    (out / "FINDINGS.md").write_text(write_findings(result.table, spec, Path(args.sweep), out))
    print(f"wrote {out}; {len(result.failed)} cells failed", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
