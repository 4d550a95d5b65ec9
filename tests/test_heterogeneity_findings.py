"""A heterogeneity sweep's FINDINGS.md (securefed.sweep.heterogeneity), on fake cells: per
partition and privacy level each optimizer's seeds, its gap to IID and margin over the floor,
and the optimizer the rule picks; and the table's mean of the last rounds it picks by."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_sweep import _fake_cell

from securefed.sweep import load_spec, plan_cells
from securefed.sweep.heterogeneity import (
    heterogeneity_findings,
    is_heterogeneity_sweep,
    picks,
)
from securefed.sweep.table import SweepTable, cell_row, collect_table

EPS = "privacy.dp.target_epsilon"
KEYS = ("partition.scheme", "partition.alpha", "training.server_optimizer.name", EPS, "seed")


def _row(scheme, optimizer, eps, seed, final, tail, status="done", **extra) -> dict:
    return {
        "cell": f"{scheme}-{optimizer}-{eps}-{seed}",
        "status": status,
        "partition.scheme": scheme,
        "partition.alpha": 0.5 if scheme == "dirichlet" else None,
        "training.server_optimizer.name": optimizer,
        EPS: eps,
        "seed": seed,
        "metric": "accuracy",
        "federated": final,
        "federated_tail": tail,
        "majority": 0.4,
        **extra,
    }


def _table() -> SweepTable:
    rows = [
        *(_row("iid", "fedavg", None, s, f, f) for s, f in enumerate([0.80, 0.82, 0.84])),
        *(_row("dirichlet", "fedavg", None, s, 0.79, t) for s, t in enumerate([0.78, 0.8, 0.79])),
        *(_row("dirichlet", "fedavgm", None, s, f, f) for s, f in enumerate([0.80, 0.81, 0.82])),
        # the highest tail, but two seeds: shown, not picked
        *(_row("dirichlet", "fedadam", None, s, 0.9, 0.9) for s in range(2)),
        *(_row("dirichlet", "fedadam", 8, s, f, f) for s, f in enumerate([0.62, 0.70, 0.66])),
        _row("dirichlet", "fedavg", 8, 0, 0.65, 0.63),
        _row("dirichlet", "fedavg", 8, 1, None, None, status="pending"),
    ]
    return SweepTable(KEYS, rows)


def test_the_rule_picks_the_best_tail_mean_among_optimizers_with_three_seeds():
    text = heterogeneity_findings(_table(), {"training.rounds": 20}, "configs/dp.yaml")
    # 0.81 against 0.79, higher in every seed; fedadam has 2 seeds: not counted
    assert (
        "- Dirichlet 0.5, non-private: pick: fedavgm, mean of the last 5 rounds 0.810, the best "
        "of 2 optimizers with 3 seeds: 2.0 points above fedavg, higher in 3 of the 3 seeds "
        "both ran\n"
    ) in text
    assert (
        "- Dirichlet 0.5, epsilon 8: pick: fedadam, mean of the last 5 rounds 0.660 "
        "(the only optimizer with 3 seeds)"
    ) in text
    assert picks(_table()) == {
        ("IID", "non-private"): "fedavg",
        ("Dirichlet 0.5", "non-private"): "fedavgm",
        ("Dirichlet 0.5", "epsilon 8"): "fedadam",
    }


def test_the_pick_counts_the_seeds_it_wins_against_the_runner_up_seed_by_seed():
    """A higher mean need not win every seed: the count pairs rows by seed, not by order."""
    rows = [
        # in table order 0.78, 0.83, 0.81: paired by position fedavgm would win 2
        *(_row("dirichlet", "fedavg", None, s, t, t) for s, t in [(1, 0.78), (2, 0.83), (0, 0.81)]),
        *(_row("dirichlet", "fedavgm", None, s, t, t) for s, t in enumerate([0.80, 0.81, 0.82])),
        *(_row("dirichlet", "fedadam", None, s, 0.5, 0.5) for s in range(3)),
    ]
    text = heterogeneity_findings(SweepTable(KEYS, rows), {})
    assert (
        "pick: fedavgm, mean of the last 5 rounds 0.810, the best of 3 optimizers with 3 seeds: "
        "0.3 points above fedavg, higher in 1 of the 3 seeds both ran"
    ) in text


def test_each_row_states_seeds_spread_gap_to_iid_and_margin_over_the_floor():
    lines = heterogeneity_findings(_table(), {}).splitlines()
    start = lines.index("### Dirichlet 0.5, non-private")
    fedavgm = next(x for x in lines[start:] if x.startswith("| fedavgm |"))
    # mean 0.81 minus IID FedAvg's 0.82: -1.0 point; 0.41 above the 0.40 floor, lowest 0.40
    assert fedavgm == (
        "| fedavgm | 3 | 0.810 (0.800-0.820) | 0.810 (0.800-0.820) | -1.0 vs fedavg "
        "| -1.0 vs fedavg | +41.0, +40.0 |"
    )
    fedadam = next(x for x in lines[start:] if x.startswith("| fedadam |"))
    assert fedadam.startswith("| fedadam | 2 | 0.900 (0.900-0.900) |")
    dp = lines.index("### Dirichlet 0.5, epsilon 8")
    private = next(x for x in lines[dp:] if x.startswith("| fedadam |"))
    assert private.endswith("| - | - | +26.0, +22.0 |")  # no IID run at epsilon 8


def test_missing_cells_are_named_and_too_few_seeds_picks_nothing():
    table = _table()
    text = heterogeneity_findings(table, {})
    assert "15 of 16 cells done. Not yet run: `dirichlet-fedavg-8-1`." in text
    one_seed = SweepTable(KEYS, table.rows[:1])
    assert "no pick: no optimizer has 3 seeds done (at most 1)" in heterogeneity_findings(
        one_seed, {}
    )


def test_a_partition_or_optimizer_sweep_gets_these_findings_an_epsilon_sweep_does_not():
    assert is_heterogeneity_sweep(KEYS)
    assert is_heterogeneity_sweep(("training.proximal_mu", "seed"))
    assert not is_heterogeneity_sweep(("model.adapter", EPS, "seed"))


@pytest.mark.parametrize(
    ("rounds", "expected"), [(8, (0.3 + 0.4 + 0.5 + 0.6 + 0.7) / 5), (2, 0.05)]
)
def test_the_table_s_tail_is_the_mean_of_the_last_five_evaluated_rounds(tmp_path, rounds, expected):
    _fake_cell(tmp_path, "cell", "ffa_lora", 8.0, 0.7)  # results.json as a run writes it
    records = [{"round": r, "eval": {"pooled": {"accuracy": r / 10}}} for r in range(rounds)]
    records.append({"round": rounds})  # a round without an evaluation does not count
    metrics = tmp_path / "cells" / "cell" / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    row = cell_row(tmp_path / "cells" / "cell", "cell", {})
    assert row["federated_tail"] == pytest.approx(expected)


ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_findings_recompute_from_the_cells_and_the_docs_quote_them():
    spec, base = load_spec(ROOT / "configs/sweeps/noniid_first.yaml")
    planned = [(c.id, c.swept) for c in plan_cells(spec, base)]
    table = collect_table(ROOT / "audits/noniid", planned)  # the committed cell records
    findings = (ROOT / "audits/noniid/FINDINGS.md").read_text()
    assert findings == heterogeneity_findings(table, spec.set, "configs/dp.yaml")
    # docs/heterogeneity.md's seed table: each row is FINDINGS' row of its partition and privacy
    docs = (ROOT / "docs/heterogeneity.md").read_text()
    rows = re.findall(r"^\| ((?:IID|Dirichlet [\d.]+), [\w -]+?) (\| \w.*\|)$", docs, re.M)
    assert len(rows) >= 3
    for group, row in rows:
        section = findings.split(f"### {group}\n", 1)[1].split("###", 1)[0]
        assert row in section.splitlines(), (group, row)
