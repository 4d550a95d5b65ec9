"""A backbone x adapter x task grid's FINDINGS.md (securefed.sweep.comparison), on a small
synthetic table: each claim it makes, and a case that flips it; the table's zero-shot and
per-round CPU columns; and the committed grid recomputed from its cells."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from test_sweep import _fake_cell

from securefed.sweep import load_spec, plan_cells
from securefed.sweep.comparison import (
    centralized_verdict,
    comparison_findings,
    is_comparison_sweep,
)
from securefed.sweep.table import SweepTable, cell_row, collect_table

KEYS = ("seed", "model.adapter", "model.backbone", "task.name")
LLM, ENCODER = "embedded:smollm2-135m-instruct", "embedded:all-MiniLM-L6-v2"


def _row(adapter, backbone, task, seed, fed, central, isolated, zero, status="done", **extra):
    return {
        "cell": f"{seed}-{adapter}-{backbone}-{task}",
        "status": status,
        "seed": seed,
        "model.adapter": adapter,
        "model.backbone": backbone,
        "task.name": task,
        "task": task,
        "adapter": adapter,
        "metric": "accuracy",
        "federated": fed,
        "centralized": central,
        "isolated": isolated,
        "zero_shot": zero,
        "majority": 0.3,
        "trainable_params": {"lora": 1000, "qlora": 1000, "ia3": 100}[adapter],
        "peak_rss_mb": 1000.0,
        "round_cpu_s": 10.0,
        "cpu_s": 100.0,
        "wall_s": 150.0,
        "energy_wh": 1.0,
        "energy_kind": "estimate",
        **extra,
    }


def _table(*rows) -> SweepTable:
    return SweepTable(KEYS, list(rows))


def test_federated_is_comparable_to_centralized_only_within_the_margin_in_every_seed():
    # within 5 points in both seeds: comparable; -5.1 in one: not, though the mean is higher
    level = [_row("lora", LLM, "t", s, f, 0.60, 0.4, 0.25) for s, f in enumerate([0.56, 0.63])]
    assert centralized_verdict(level) == (
        "comparable to centralized, -0.5 points (seeds -4.0 to +3.0)"
    )
    below = [_row("lora", LLM, "t", s, f, 0.60, 0.4, 0.25) for s, f in enumerate([0.549, 0.64])]
    assert centralized_verdict(below).startswith("not comparable to centralized: below it, -0.5")
    above = [_row("lora", LLM, "t", s, f, 0.60, 0.4, 0.25) for s, f in enumerate([0.6, 0.66])]
    assert centralized_verdict(above).startswith("not comparable to centralized: above it, +3.0")
    one = [_row("lora", LLM, "t", 0, 0.40, 0.60, 0.4, 0.25)]
    assert centralized_verdict(one) == "not comparable to centralized: below it, -20.0 points"
    assert centralized_verdict([_row("lora", LLM, "t", 0, 0.4, None, 0.4, 0.25)]) == (
        "no centralized arm"
    )


def test_a_gap_of_exactly_the_margin_is_comparable(monkeypatch):
    monkeypatch.setattr("securefed.sweep.comparison.COMPARABLE_POINTS", 6.25)
    exact = [_row("lora", LLM, "t", 0, 0.5, 0.5625, 0.4, 0.25)]  # -6.25 points, exactly
    assert centralized_verdict(exact).startswith("comparable")
    ahead = [_row("lora", LLM, "t", 0, 0.5625, 0.5, 0.4, 0.25)]  # +6.25 points, exactly
    assert centralized_verdict(ahead).startswith("comparable")
    monkeypatch.setattr("securefed.sweep.comparison.COMPARABLE_POINTS", 6.0)
    assert centralized_verdict(exact).startswith("not comparable to centralized: below")
    assert centralized_verdict(ahead).startswith("not comparable to centralized: above")


def test_each_cell_states_its_arms_and_the_gaps_above_or_below_them():
    above = _row("lora", LLM, "synthetic_medqa", 0, 0.62, 0.60, 0.40, 0.25)
    below = _row("ia3", LLM, "synthetic_medqa", 0, 0.35, 0.60, 0.40, 0.45)
    lines = comparison_findings(_table(above, below), {}).splitlines()
    assert (
        "- smollm2-135m-instruct, synthetic_medqa, lora: federated is comparable to "
        "centralized, +2.0 points; 22.0 points above isolated; 37.0 points above zero-shot; "
        "32.0 points above the floor."
    ) in lines
    assert (
        "- smollm2-135m-instruct, synthetic_medqa, ia3: federated is not comparable to "
        "centralized: below it, -25.0 points; 5.0 points below isolated; 10.0 points below "
        "zero-shot; 5.0 points above the floor."
    ) in lines
    assert (
        "| smollm2-135m-instruct | synthetic_medqa | lora | 1 | 0.620 | 0.600 | 0.400 | 0.250 "
        "| 0.300 | +2.0 | +22.0 | +37.0 | +32.0 |"
    ) in lines


def test_several_seeds_show_their_mean_and_range():
    rows = [_row("lora", ENCODER, "t", s, f, 0.6, 0.4, 0.25) for s, f in enumerate([0.5, 0.7])]
    text = comparison_findings(_table(*rows), {})
    assert "| all-MiniLM-L6-v2 | t | lora | 2 | 0.600 (0.500-0.700) | 0.600 (0.600-0.600) |" in text


def test_an_adapter_s_costs_are_against_lora_on_the_cells_both_ran():
    lora = _row("lora", LLM, "a", 0, 0.60, 0.6, 0.4, 0.25)
    # a LoRA cell QLoRA did not run: it must not enter the ratios
    lora_other = _row("lora", LLM, "b", 0, 0.90, 0.6, 0.4, 0.25, peak_rss_mb=9000.0)
    qlora = _row(
        "qlora",
        LLM,
        "a",
        0,
        0.57,
        0.6,
        0.4,
        0.25,
        peak_rss_mb=800.0,
        round_cpu_s=25.0,
        cpu_s=150.0,
        energy_wh=2.0,
    )
    unpaired = _row("qlora", LLM, "c", 0, 0.1, 0.6, 0.4, 0.25, peak_rss_mb=1.0)  # no LoRA cell
    text = comparison_findings(_table(lora_other, lora, qlora, unpaired), {})
    assert (
        "- smollm2-135m-instruct, qlora against lora on the 1 cell(s) both ran: trainable "
        "parameters 1.00x, peak memory 0.80x, CPU-s per federated round 2.50x, CPU-s for the "
        "whole cell 1.50x, energy 2.00x; federated accuracy -3.0 points."
    ) in text
    # the cost table averages every cell of the adapter on the backbone
    assert "| smollm2-135m-instruct | lora | 2 | 1000 | 5000 | 10.0 | 100 | 1.000 | 0.750 |" in text
    ia3_alone = comparison_findings(_table(_row("ia3", ENCODER, "a", 0, 0.5, 0.5, 0.4, 0.2)), {})
    assert "against lora" not in ia3_alone  # nothing to compare with


def test_a_resumed_cell_gives_no_whole_cell_cpu_or_energy_but_its_round_cpu_counts():
    """An interrupted invocation is missing from a resumed cell's energy record."""
    lora = _row("lora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25, cpu_s=800.0, energy_wh=4.0)
    lora_b = _row("lora", LLM, "b", 0, 0.6, 0.6, 0.4, 0.25, cpu_s=300.0, resumed=True)
    qlora = _row("qlora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25, cpu_s=1200.0, round_cpu_s=20.0)
    qlora_b = _row("qlora", LLM, "b", 0, 0.6, 0.6, 0.4, 0.25, cpu_s=9.0, round_cpu_s=30.0)
    text = comparison_findings(_table(lora, lora_b, qlora, qlora_b), {})
    # lora: 800 CPU-s (the resumed cell's 300 left out), its round CPU-s over both cells
    assert "| smollm2-135m-instruct | lora | 2 | 1000 | 1000 | 10.0 | 800 | 4.000 | 0.600 |" in text
    assert f"Resumed: `{lora_b['cell']}`." in text
    # the whole-cell ratios over the one pair neither of which resumed; per round over both
    assert "CPU-s per federated round 2.50x, CPU-s for the whole cell 1.50x, energy 0.25x" in text


def test_missing_cells_are_listed_with_the_command_that_resumes_them():
    done = _row("lora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25)
    pending = _row("ia3", LLM, "a", 1, None, None, None, None, status="pending")
    text = comparison_findings(_table(done, pending), {}, "configs/llm.yaml", "python go")
    assert "1 of 2 cells done." in text
    assert "1 cells not yet run; `python go` runs them (finished cells are kept):" in text
    assert f"- `{pending['cell']}`" in text
    assert "Missing cells" not in comparison_findings(_table(done), {})


def test_the_cpu_caveats_name_the_energy_basis_and_the_wall_time_spread():
    rows = [
        _row("lora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25),
        _row("qlora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25, wall_s=300.0, energy_kind="measured"),
    ]
    text = comparison_findings(_table(*rows), {})
    assert "dequantized in software" in text
    assert "- Energy: estimate, measured (the basis" in text
    assert "Wall time per CPU second ranges from 1.50 to 3.00 across cells" in text
    assert "The busiest cell kept 0.67 cores busy on average" in text
    alone = comparison_findings(_table(rows[0]), {})
    assert "Wall time per CPU second is 1.50 (wall time also counts waiting" in alone
    two_threads = comparison_findings(
        _table(_row("lora", LLM, "a", 0, 0.6, 0.6, 0.4, 0.25, wall_s=50.0)), {}
    )
    assert "The busiest cell kept 2.00 cores busy on average" in two_threads


def test_a_backbone_and_adapter_grid_gets_these_findings_other_sweeps_do_not():
    assert is_comparison_sweep(KEYS)
    assert not is_comparison_sweep(("model.adapter", "privacy.dp.target_epsilon", "seed"))
    assert not is_comparison_sweep(("model.backbone", "seed"))


def test_the_table_reads_the_zero_shot_arm_the_cpu_time_per_round_and_a_resume(tmp_path):
    _fake_cell(tmp_path, "cell", "lora", float("inf"), 0.7)
    results_file = tmp_path / "cells" / "cell" / "results.json"
    results = json.loads(results_file.read_text())
    row = cell_row(tmp_path / "cells" / "cell", "cell", {})
    assert row["zero_shot"] is None and row["round_cpu_s"] is None  # not run, not recorded
    results["zero_shot"] = {"pooled": {"accuracy": 0.25}}
    results["timing"] = {"resumed": True}
    results_file.write_text(json.dumps(results))
    metrics = tmp_path / "cells" / "cell" / "metrics.jsonl"
    records = [{"round": r, "cpu_s": 10.0 + r} for r in range(3)] + [{"round": 3}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    row = cell_row(tmp_path / "cells" / "cell", "cell", {})
    assert row["zero_shot"] == 0.25
    assert row["round_cpu_s"] == pytest.approx(11.0)
    assert row["resumed"] is True


ROOT = Path(__file__).resolve().parents[1]
GRID_LINE = re.compile(r"^(?:- |\| )(?:smollm2-135m-instruct|all-MiniLM-L6-v2)[ ,].*$", re.M)


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_sweep_audit", ROOT / "scripts/make_sweep_audit.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_grid_recomputes_from_its_cells_and_the_docs_quote_it():
    sweep, out = ROOT / "configs/sweeps/llm_grid.yaml", ROOT / "audits/llm_grid"
    spec, base = load_spec(sweep)
    planned = [(c.id, c.swept) for c in plan_cells(spec, base)]
    table = collect_table(out, planned)  # the committed cell records
    assert table.done_rows(), "no committed cell"
    # the done cells' rows, to the character (an unfinished cell's status is its machine's)
    planned_ids = [c for c, _ in planned]
    lines = dict(zip(planned_ids, table.to_csv().splitlines()[1:], strict=True))
    committed = (out / "table.csv").read_text().splitlines()
    assert committed[0] == table.to_csv().splitlines()[0]
    done = {r["cell"] for r in table.done_rows()}
    for cell_id, line in zip(planned_ids, committed[1:], strict=True):
        assert (line == lines[cell_id]) if cell_id in done else (",done," not in line), cell_id
    assert (out / "FINDINGS.md").read_text() == _script().write_findings(table, spec, sweep, out)
    # docs/llm.md quotes FINDINGS: each of its grid lines is one of FINDINGS' lines, verbatim
    findings = set((out / "FINDINGS.md").read_text().splitlines())
    docs = (ROOT / "docs/llm.md").read_text()
    quoted = GRID_LINE.findall(docs)
    assert quoted
    (count,) = re.findall(r"(\d+ of \d+) cells\s+finished", docs)
    assert f"{count} cells done." in findings
    for line in quoted:
        assert line in findings, line


def test_the_grid_s_lora_cell_reproduces_the_committed_llm_config_run():
    """The grid's SmolLM2 LoRA medqa cell at seed 0 is configs/llm.yaml at seed 0: docs/llm.md
    says it reproduces audits/llm_config/seed-0's pooled figures exactly."""
    spec, base = load_spec(ROOT / "configs/sweeps/llm_grid.yaml")
    (cell,) = [
        c.id
        for c in plan_cells(spec, base)
        if c.swept["seed"] == 0
        and c.swept["model.adapter"] == "lora"
        and c.swept["model.backbone"] == LLM
        and c.swept["task.name"] == "synthetic_medqa"
    ]
    grid = json.loads((ROOT / "audits/llm_grid/cells" / cell / "results.json").read_text())
    alone = json.loads((ROOT / "audits/llm_config/seed-0/results.json").read_text())
    for arm in ("federated", "centralized", "isolated", "zero_shot"):
        assert grid[arm]["pooled"] == alone[arm]["pooled"], arm
