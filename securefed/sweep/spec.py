"""``securefed sweep SWEEP.yaml``: many runs over a grid of config values, one table at the end.

A sweep file holds a base config and the cells to run on it::

    name: eps_adapters              # sweep folder: runs/sweeps/<name> unless --out
    base: ../default.yaml           # a path (relative to this file), an inline mapping, or
                                    # null for the embedded default
    set: {training.rounds: 2}       # overrides applied to every cell
    grid:                           # cartesian product over dotted keys
      model.adapter: [lora, qlora, ia3]
      privacy.dp.target_epsilon: [null, 8, 4, 1]
      task:                         # an axis of override mappings that vary together
        - {task.name: fpb, model.max_length: 128}
        - {task.name: fiqa_sa, model.max_length: 128}
    cells:                          # explicit override dicts; crossed with the grid if both
      - {partition.alpha: 0.1}

Sweeping ``privacy.dp.target_epsilon`` also sets ``privacy.dp.enabled`` (null: non-private),
unless the cell sets ``privacy.dp.enabled`` itself. Every cell's config is validated before
any cell starts. A cell is an ordinary run folder ``<sweep>/cells/<id>``, whose id is a slug
of its swept values plus a hash of its resolved config: change the base or the grid and the
changed cells get new folders, while unchanged ones are reused. Rerunning a sweep skips
cells with ``results.json``, resumes those with ``state.json`` and restarts the rest, so a
killed sweep loses at most the rounds in progress.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from securefed.config import (
    RunConfig,
    apply_overrides,
    default_config_path,
    dump_config,
    read_yaml,
    validate,
)
from securefed.errors import ConfigError
from securefed.sweep.runner import CellJob, run_cells
from securefed.sweep.table import SweepTable, write_sweep_outputs

QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}
EPSILON_KEY, DP_ENABLED_KEY = "privacy.dp.target_epsilon", "privacy.dp.enabled"
SHORT_NAMES = {
    EPSILON_KEY: "eps",
    "model.adapter": "",
    "partition.num_clients": "clients",
    "secure_aggregation.enabled": "secagg",
    "partition.alpha": "alpha",
    "partition.scheme": "",
    "partition.column": "",
    "training.server_optimizer.name": "",
    "training.server_optimizer.momentum": "m",
    "training.server_lr": "slr",
    "training.proximal_mu": "prox",
}


class SweepSpec(BaseModel):
    """The sweep file, checked like a run config: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    base: str | dict[str, Any] | None = None
    set: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}  # dotted key -> values, or axis name -> mappings
    cells: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its folder name, the values it sweeps, its validated config."""

    id: str
    swept: dict[str, Any]
    config: RunConfig


@dataclass
class SweepResult:
    sweep_dir: Path
    table: SweepTable
    failed: dict[str, str] = field(default_factory=dict)


# ---- plan: spec -> validated cells -----------------------------------------------------------
def load_spec(path: str | Path) -> tuple[SweepSpec, dict[str, Any]]:
    """The sweep file and its base config as a raw dict (not yet validated)."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = "sweep." + ".".join(str(p) for p in first["loc"])
        allowed = ", ".join(SweepSpec.model_fields)
        hint = (
            f"unknown key; allowed: {allowed}"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise ConfigError(key, first.get("input"), hint) from None
    if spec.base is None or isinstance(spec.base, str):
        base_path = default_config_path() if spec.base is None else path.parent / spec.base
        base = read_yaml(base_path)
    else:
        base = json.loads(json.dumps(spec.base))  # a private deep copy
    return spec, base


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2}`` -> ``{"a.b": 1, "c.d": 2}``; config leaves are not dicts."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def cell_overrides(spec: SweepSpec) -> list[dict[str, Any]]:
    """Each cell's swept values: explicit cells crossed with the grid's cartesian product.

    A grid axis is a dotted key with a list of values, or any name with a list of override
    mappings that vary together (e.g. an adapter with its own learning rate).
    """
    explicit = [flatten(c) for c in spec.cells] or [{}]
    axes = []
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError(f"sweep.grid.{key}", values, "a non-empty list of values")
        axes.append([flatten(v) if isinstance(v, dict) else {key: v} for v in values])
    points = [
        {k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)
    ]
    return [{**cell, **point} for cell in explicit for point in points]


def _with_implied(swept: dict[str, Any]) -> dict[str, Any]:
    if EPSILON_KEY in swept and DP_ENABLED_KEY not in swept:
        return {**swept, DP_ENABLED_KEY: swept[EPSILON_KEY] is not None}
    return swept


def _apply(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    # The same path as ``--set key=value``: JSON is valid YAML, so each typed value
    # round-trips through the override parser and errors name the key exactly as --set does.
    return apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def slug(swept: dict[str, Any]) -> str:
    """A readable folder-name part, e.g. ``lora_eps-8_alpha-0.5``."""
    parts = []
    for key, value in swept.items():
        short = SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])
        if key == EPSILON_KEY and value is None:
            text = "nonprivate"
        elif isinstance(value, bool):
            text = "on" if value else "off"
        else:
            text = str(value)
        parts.append(f"{short}-{text}" if short else text)
    return re.sub(r"[^A-Za-z0-9_.-]+", "", "_".join(parts))[:60] or "base"


def plan_cells(spec: SweepSpec, base: dict[str, Any]) -> list[Cell]:
    """Every cell's validated config; raises one ``ConfigError`` before anything runs."""
    common = flatten(spec.set)
    cells: list[Cell] = []
    seen: dict[str, dict[str, Any]] = {}
    for swept in cell_overrides(spec):
        raw = _apply(json.loads(json.dumps(base)), {**common, **_with_implied(swept)})
        raw["name"] = spec.name
        try:
            cfg = validate(raw)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.value, f"{exc.allowed} (sweep cell {swept})") from None
        digest = hashlib.sha256(dump_config(cfg).encode()).hexdigest()[:8]
        cell_id = f"{slug(swept)}-{digest}"
        if cell_id in seen:
            raise ConfigError("sweep.cells", swept, f"duplicates the cell {seen[cell_id]}")
        seen[cell_id] = swept
        cells.append(Cell(cell_id, swept, validate({**raw, "name": cell_id})))
    return cells


# ---- the sweep -------------------------------------------------------------------------------
def run_sweep(
    spec_path: str | Path,
    out: str | Path | None = None,
    workers: int = 1,
    console: Console | None = None,
    run: bool = True,
) -> SweepResult:
    """Plan, validate, run the unfinished cells (none when ``run`` is false: the outputs then
    show the cells done so far), then write ``table.csv``, ``table.md``, plots."""
    spec, base = load_spec(spec_path)
    cells = plan_cells(spec, base)
    sweep_dir = Path(out) if out is not None else Path("runs/sweeps") / spec.name
    (sweep_dir / "cells").mkdir(parents=True, exist_ok=True)
    plan = {
        "name": spec.name,
        "spec": spec.model_dump(mode="json"),
        "base": base,
        "cells": [{"id": c.id, "swept": c.swept} for c in cells],
    }
    (sweep_dir / "sweep.json").write_text(json.dumps(plan, indent=2) + "\n")

    jobs = [CellJob(c.id, str(sweep_dir / "cells" / c.id), dump_config(c.config)) for c in cells]
    failed = run_cells(jobs, workers, console or Console(stderr=True, quiet=True)) if run else []
    table = write_sweep_outputs(sweep_dir, [(c.id, c.swept) for c in cells])
    return SweepResult(sweep_dir, table, failed)


# ---- command line ----------------------------------------------------------------------------
def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``securefed sweep SWEEP.yaml [--workers N] [--out DIR]``."""
    parser = subparsers.add_parser("sweep", help="run a grid of configs; one table at the end")
    parser.add_argument("sweep", help="sweep YAML: base config + grid and/or cells")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="cells run in parallel worker processes (default 1: in this process)",
    )
    parser.add_argument("--out", help="sweep folder (default runs/sweeps/<name>); rerun to resume")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate every cell and list them; run nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_cmd_sweep)
    return parser


def _cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    if args.workers < 1:
        raise ConfigError("--workers", args.workers, "a positive integer")
    if args.dry_run:
        spec, base = load_spec(args.sweep)
        for cell in plan_cells(spec, base):
            console.print(f"{cell.id}  {cell.swept}", highlight=False, soft_wrap=True)
        return 0
    # Quiet libraries here and in the spawned workers, which inherit the environment.
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    progress_console = Console(stderr=True, quiet=args.quiet)
    result = run_sweep(args.sweep, out=args.out, workers=args.workers, console=progress_console)
    result.table.print(console)
    console.print(f"sweep folder: {result.sweep_dir} (table.csv, table.md, plots/)")
    for cell_id, error in result.failed.items():
        console.print(
            f"[red]failed[/red] {cell_id}: {error} (see its error.txt; rerun to retry)",
            highlight=False,
        )
    return 1 if result.failed else 0
