"""``securefed sweep``: planning and validation, the table, and tiny sweeps end to end."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from securefed.config import load_config
from securefed.errors import ConfigError
from securefed.sweep import load_spec, plan_cells, run_sweep, slug
from securefed.sweep.plots import pareto_frontier
from securefed.sweep.table import collect_table, write_sweep_outputs

TINY = {
    "task.synthetic.num_examples": 120,
    "training.rounds": 1,
    "training.local_steps": 2,
    "model.max_length": 32,
    "training.batch_size": 8,
}


def _spec(tmp_path: Path, **body) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "set": TINY, **body}, sort_keys=False))
    return path


def _plan(tmp_path: Path, **body):
    return plan_cells(*load_spec(_spec(tmp_path, **body)))


# ---- planning --------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_and_epsilon_switches_dp(tmp_path):
    cells = _plan(
        tmp_path, grid={"model.adapter": ["lora", "ia3"], "privacy.dp.target_epsilon": [None, 4]}
    )
    assert [c.swept for c in cells] == [
        {"model.adapter": a, "privacy.dp.target_epsilon": e}
        for a in ("lora", "ia3")
        for e in (None, 4)
    ]
    for cell in cells:
        dp = cell.config.privacy.dp
        assert dp.enabled is (cell.swept["privacy.dp.target_epsilon"] is not None)
        assert cell.config.training.rounds == 1 and cell.config.name == cell.id
    assert cells[0].id.startswith("lora_eps-nonprivate-") and cells[3].id.startswith("ia3_eps-4-")
    assert len({c.id for c in cells}) == 4


def test_explicit_cells_are_crossed_with_the_grid_and_may_set_dp_themselves(tmp_path):
    cells = _plan(
        tmp_path,
        grid={"seed": [0, 1]},
        cells=[
            {"partition": {"alpha": 0.1}},
            {"privacy.dp.target_epsilon": 2, "privacy.dp.enabled": False},
        ],
    )
    assert [c.swept for c in cells] == [
        {"partition.alpha": 0.1, "seed": 0},
        {"partition.alpha": 0.1, "seed": 1},
        {"privacy.dp.target_epsilon": 2, "privacy.dp.enabled": False, "seed": 0},
        {"privacy.dp.target_epsilon": 2, "privacy.dp.enabled": False, "seed": 1},
    ]
    assert cells[2].config.privacy.dp.enabled is False


def test_nested_set_keeps_the_base_section_s_other_keys(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "n", "set": {"training": {"rounds": 2}}}))
    (cell,) = plan_cells(*load_spec(path))
    assert cell.config.training.rounds == 2 and cell.config.training.batch_size == 16


def test_cell_id_is_a_slug_plus_a_hash_of_the_resolved_config(tmp_path):
    a = _plan(tmp_path, grid={"seed": [3]})[0]
    again = _plan(tmp_path, grid={"seed": [3]})[0]
    path = _spec(tmp_path, grid={"seed": [3]})
    spec, base = load_spec(path)
    base["partition"]["alpha"] = 0.123  # a different base: same slug, different folder
    other = plan_cells(spec, base)[0]
    assert a.id == again.id and a.id.startswith("seed-3-")
    assert other.id != a.id and other.id.split("-")[:2] == a.id.split("-")[:2]
    assert (
        slug({"secure_aggregation.enabled": False, "partition.num_clients": 8})
        == "secagg-off_clients-8"
    )


def test_base_may_be_a_path_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "base.yaml").write_text("name: b\ntraining: {rounds: 3}\n")
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: base.yaml\ngrid: {seed: [1]}\n")
    (cell,) = plan_cells(*load_spec(path))
    assert cell.config.training.rounds == 3 and cell.config.seed == 1


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"grid": {"model.adapter": ["lora", "lorra"]}}, "model.adapter"),
        ({"cells": [{}, {"training.roundz": 2}]}, "training.roundz"),
        ({"grid": {"seed": [0]}, "gird": {"seed": [1]}}, "sweep.gird"),
        ({"grid": {"seed": []}}, "sweep.grid.seed"),
        ({"cells": [{"seed": 1}, {"seed": 1}]}, "sweep.cells"),
    ],
)
def test_a_bad_sweep_is_rejected_before_any_cell_starts(tmp_path, body, key):
    out = tmp_path / "never"
    with pytest.raises(ConfigError) as err:
        run_sweep(_spec(tmp_path, **body), out=out)
    assert err.value.key == key
    assert "\n" not in str(err.value)
    assert not out.exists()


# ---- the table, from run folders -------------------------------------------------------------
def _fake_cell(
    root: Path, cell_id: str, adapter: str, eps: float, fed: float, energy_wh: float | None = 0.5
) -> None:
    folder = root / "cells" / cell_id
    folder.mkdir(parents=True)
    clients = {str(c): {"epsilon": eps * (1 + c) / 2} for c in range(2)}
    results = {  # every key the run-folder contract requires of results.json
        "name": cell_id,
        "task": {"name": "synthetic_finance", "synthetic": True, "primary_metric": "accuracy"},
        "adapter": adapter,
        "backbone": "embedded:all-MiniLM-L6-v2",
        "trainable_parameters": 1000,
        "federated": {
            "pooled": {"accuracy": fed},
            "clients": None,
            "rounds": 2,
            "pooled_by_round": None,
        },
        "secure_aggregation": {},
        "centralized": {"pooled": {"accuracy": fed + 0.1}},
        "isolated": {"pooled": {"accuracy": fed - 0.1}},
        "privacy": {"clients": clients},
    }
    (folder / "results.json").write_text(json.dumps(results))
    records = [
        {"round": r, "bytes": {"0": {"up": 100 + r, "down": 50}, "1": {"up": 102 + r, "down": 50}}}
        for r in range(2)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if energy_wh is not None:
        total = {
            "wall_s": 3.0,
            "cpu_s": 2.0,
            "gpu_elapsed_s": None,
            "peak_rss_bytes": 2**30,
            "peak_gpu_memory_bytes": None,
            "energy_wh": energy_wh,
            "energy_kind": "estimate",
            "invocations": 1,
        }
        (folder / "energy.json").write_text(json.dumps({"invocations": [], "total": total}))


def test_table_rows_come_from_the_run_folders(tmp_path):
    _fake_cell(tmp_path, "lora-a", "lora", math.inf, 0.8)
    _fake_cell(tmp_path, "ia3-b", "ia3", 4.0, 0.6, energy_wh=None)
    (tmp_path / "cells" / "lora-c").mkdir()
    (tmp_path / "cells" / "lora-c" / "state.json").write_text("{}")
    (tmp_path / "cells" / "ia3-d").mkdir()
    (tmp_path / "cells" / "ia3-d" / "error.txt").write_text("Traceback")
    cells = [
        ("lora-a", {"model.adapter": "lora", "privacy.dp.target_epsilon": None}),
        ("ia3-b", {"model.adapter": "ia3", "privacy.dp.target_epsilon": 4}),
        ("lora-c", {"model.adapter": "lora"}),
        ("ia3-d", {"model.adapter": "ia3"}),
        ("qlora-e", {"model.adapter": "qlora"}),
    ]
    table = write_sweep_outputs(tmp_path, cells)
    by_id = {r["cell"]: r for r in table.rows}
    assert [r["status"] for r in table.rows] == ["done", "done", "incomplete", "failed", "pending"]
    a, b = by_id["lora-a"], by_id["ia3-b"]
    assert (a["federated"], a["centralized"], a["isolated"]) == (
        0.8,
        pytest.approx(0.9),
        pytest.approx(0.7),
    )
    assert math.isinf(a["eps_max"]) and (b["eps_max"], b["eps_mean"]) == (4.0, 3.0)
    assert (a["upload_bytes"], a["download_bytes"]) == (101.5, 50)
    assert a["peak_rss_mb"] == 1024 and a["energy_wh"] == 0.5 and b.get("energy_wh") is None
    rows = list(csv.DictReader(io.StringIO((tmp_path / "table.csv").read_text())))
    assert rows[0]["eps_max"] == "inf" and rows[0]["privacy.dp.target_epsilon"] == ""
    assert rows[1]["energy_wh"] == "" and rows[4]["status"] == "pending"
    md = (tmp_path / "table.md").read_text()
    assert "| lora-a | lora |" in md and "2 of 5 cells done" in md
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == [
        "accuracy_vs_energy.png",
        "accuracy_vs_epsilon.png",
        "federated_vs_baselines.png",
    ]
    assert collect_table(tmp_path, cells) == table  # a pure function of the folders


def test_pareto_frontier_keeps_only_undominated_points():
    points = [(1.0, 0.5), (4.0, 0.7), (4.0, 0.6), (8.0, 0.65), (math.inf, 0.9)]
    assert pareto_frontier(points) == [(1.0, 0.5), (4.0, 0.7), (math.inf, 0.9)]


def test_a_grid_axis_of_mappings_varies_its_keys_together(tmp_path):
    adapters = [
        {"model.adapter": "lora", "training.lr": 2e-4},
        {"model": {"adapter": "ia3"}, "training.lr": 3e-3},
    ]
    cells = _plan(tmp_path, grid={"adapter": adapters, "seed": [0, 1]})
    assert [(c.config.model.adapter, c.config.training.lr, c.config.seed) for c in cells] == [
        ("lora", 2e-4, 0),
        ("lora", 2e-4, 1),
        ("ia3", 3e-3, 0),
        ("ia3", 3e-3, 1),
    ]
    assert cells[2].swept == {"model.adapter": "ia3", "training.lr": 3e-3, "seed": 0}


# ---- the shipped sweeps ----------------------------------------------------------------------
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize(
    "path",
    sorted((CONFIGS / "sweeps").glob("*.yaml"))
    + [CONFIGS / "paper/benchmark.yaml", CONFIGS / "paper/privacy_utility.yaml"],
    ids=lambda p: p.name,
)
def test_shipped_sweeps_plan_cleanly(path):
    cells = plan_cells(*load_spec(path))
    assert cells and len({c.id for c in cells}) == len(cells)


def test_the_paper_grid_is_four_tasks_by_three_adapters_and_matches_the_standalone_configs():
    cells = plan_cells(*load_spec(CONFIGS / "paper/benchmark.yaml"))
    pairs = {(c.config.task.name, c.config.model.adapter) for c in cells}
    assert pairs == {
        (t, a) for t in ("medqa", "medmcqa", "fpb", "fiqa_sa") for a in ("lora", "qlora", "ia3")
    }
    for cell in cells:
        standalone = load_config(
            CONFIGS / f"paper/{cell.config.task.name}-{cell.config.model.adapter}.yaml"
        )
        assert standalone.model_copy(update={"name": cell.id}) == cell.config


def test_sweep_command_dry_run_lists_the_validated_cells(tmp_path):
    import argparse

    from rich.console import Console

    from securefed.sweep import add_sweep_parser

    parser = argparse.ArgumentParser(prog="securefed")
    add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    path = _spec(tmp_path, grid={"model.adapter": ["lora", "ia3"]})
    args = parser.parse_args(["sweep", str(path), "--dry-run", "--workers", "2"])
    console = Console(record=True, width=200)
    assert args.func(args, console) == 0
    listed = console.export_text().splitlines()
    assert [line.split()[0].rsplit("-", 1)[0] for line in listed] == ["lora", "ia3"]
    assert not (tmp_path / "runs").exists()


def test_a_sweep_asked_not_to_run_tabulates_its_cells_as_pending_and_runs_nothing(tmp_path):
    path = _spec(tmp_path, grid={"model.adapter": ["lora", "ia3"]})
    result = run_sweep(path, out=tmp_path / "s", run=False)
    assert [row["status"] for row in result.table.rows] == ["pending", "pending"]
    assert result.failed == [] and not list((tmp_path / "s" / "cells").iterdir())
    assert "0 of 2 cells done" in (tmp_path / "s" / "table.md").read_text()


# ---- tiny sweeps end to end (each cell is a real run: about a minute each on 2 cores) --------
E2E_CELLS = [
    {"model.adapter": "lora"},
    {"model.adapter": "ia3"},
    {"model.adapter": "lora", "privacy.dp.target_epsilon": 8, "secure_aggregation.enabled": True},
]
# Columns that do not depend on timing, memory or DP noise.
STABLE = (
    "cell",
    "model.adapter",
    "privacy.dp.target_epsilon",
    "secure_aggregation.enabled",
    "status",
    "task",
    "adapter",
    "metric",
    "eps_max",
    "eps_mean",
    "trainable_params",
    "upload_bytes",
    "download_bytes",
)


def _e2e_spec(tmp_path: Path) -> Path:
    tiny = {**TINY, "secure_aggregation.enabled": False}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "set": tiny, "cells": E2E_CELLS}))
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    return run_sweep(_e2e_spec(root), out=root / "sweep", workers=2)


def test_a_tiny_sweep_runs_every_cell_in_parallel_workers_and_tabulates_it(uninterrupted):
    result = uninterrupted
    assert result.failed == {}
    rows = result.table.rows
    assert [r["status"] for r in rows] == ["done"] * 3
    lora, ia3, private = rows
    assert math.isinf(lora["eps_max"]) and math.isinf(ia3["eps_max"])
    assert 0 < private["eps_max"] <= 8
    assert lora["trainable_params"] != ia3["trainable_params"]
    assert all(0 <= r[t] <= 1 for r in rows for t in ("federated", "centralized", "isolated"))
    assert len({r["majority"] for r in rows}) == 1 and 0 < rows[0]["majority"] < 1  # same split
    assert all(r["upload_bytes"] > 0 and r["energy_wh"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    for row in rows:
        cell = result.sweep_dir / "cells" / row["cell"]
        assert yaml.safe_load((cell / "config.yaml").read_text())["name"] == row["cell"]
        assert (cell / "energy.json").is_file()
    assert (result.sweep_dir / "table.md").is_file()
    assert len(list((result.sweep_dir / "plots").glob("*.png"))) == 3


def _stable(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        stable = {k: row.get(k) for k in STABLE}
        if row.get("privacy.dp.target_epsilon") is None:  # no DP noise: accuracy is seeded
            stable |= {t: row.get(t) for t in ("federated", "centralized", "isolated")}
        out.append(stable)
    return out


def test_a_killed_sweep_resumes_skipping_finished_cells_and_yields_the_same_table(
    tmp_path, uninterrupted
):
    spec, out = _e2e_spec(tmp_path), tmp_path / "sweep"
    code = f"from securefed.sweep import run_sweep; run_sweep({str(spec)!r}, out={str(out)!r})"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not list(out.glob("cells/*/results.json")):
        assert child.poll() is None and time.monotonic() < deadline, "no cell finished"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    finished = {p.parent.name: p.read_bytes() for p in out.glob("cells/*/results.json")}
    assert 0 < len(finished) < len(E2E_CELLS)

    result = run_sweep(spec, out=out)
    assert result.failed == {}
    for cell_id, before in finished.items():  # skipped, not rerun
        assert (out / "cells" / cell_id / "results.json").read_bytes() == before
    assert _stable(result.table.rows) == _stable(uninterrupted.table.rows)


def test_the_terminal_table_is_readable_at_100_columns():
    import io

    from rich.console import Console

    from securefed.sweep.table import SweepTable

    keys = ("task.name", "model.adapter", "privacy.dp.target_epsilon")
    rows = []
    for i, (task, adapter, eps) in enumerate(
        [("medmcqa", "qlora", None), ("fiqa_sa", "lora", 1.0), ("synthetic_finance", "ia3", 8.0)]
    ):
        cell = f"{task}_{adapter}_eps-{eps or 'nonprivate'}-{'3f2a1b9c' * (i + 1)}"
        rows.append(
            {"cell": cell, "task.name": task, "model.adapter": adapter, keys[2]: eps,
             "status": ("done", "incomplete", "failed")[i], "federated": 0.78612 + i,
             "centralized": 0.80512, "isolated": 0.52544, "majority": 0.41667,
             "eps_max": math.inf if eps is None else 7.9912, "peak_rss_mb": 1234.5678,
             "energy_wh": 0.51234}
        )  # fmt: skip
    buffer = io.StringIO()
    SweepTable(keys, rows).print(Console(file=buffer, width=100, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100
    body = "\n".join(lines)
    for header in ("fed.", "central.", "isol.", "floor", "eps max", "RSS MiB", "Wh", "status"):
        assert header in body, header
    row_lines = [ln for ln in lines if ln.split() and ln.split()[-1] == "0.512"]
    for row, line in zip(rows, row_lines, strict=True):
        for value in (
            f"{row['federated']:.3g}",
            "0.805",
            "0.525",
            "0.417",
            "1235",
            row["status"],
        ):
            assert value in line.split(), (value, line)  # whole, on the row's own line
        # epsilon rounded up, never down: 7.9912 at 3 figures is 8, not 7.99
        assert ("inf" if row["eps_max"] == math.inf else "8") in line.split()
