"""scripts/make_sweep_audit.py's FINDINGS.md: every figure read off the sweep table."""

from __future__ import annotations

import csv
import importlib.util
import math
import re
import statistics
from pathlib import Path

from securefed.sweep import load_spec, plan_cells
from securefed.sweep.table import SweepTable, collect_table

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sweep_audit.py"
EPS = "privacy.dp.target_epsilon"


def _script():
    spec = importlib.util.spec_from_file_location("make_sweep_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(adapter: str, eps: float | None, seed: int, federated: float) -> dict:
    return {
        "cell": f"{adapter}-{eps}-{seed}",
        "status": "done",
        EPS: eps,
        "seed": seed,
        "adapter": adapter,
        "metric": "accuracy",
        "federated": federated,
        "isolated": None,
        "majority": 0.4,
        "trainable_params": 7299,
        "cpu_s": 100.0,
        "wall_s": 110.0,
    }


def test_findings_show_each_cells_mean_and_seed_range_and_the_floor_cells():
    rows = [
        _row("ffa_lora", None, 0, 0.78),
        _row("ffa_lora", None, 1, 0.76),
        _row("ffa_lora", 8, 0, 0.74),
        _row("ffa_lora", 8, 1, 0.70),
        _row("ffa_lora", 1, 0, 0.41),  # within 2 points of the 0.40 floor
        _row("ffa_lora", 1, 1, 0.52),
    ]
    text = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows), {})
    line = next(x for x in text.splitlines() if x.startswith("| ffa_lora | 0.77"))
    assert "| 0.77 (0.76-0.78) | 0.72 (0.7-0.74) | 0.465 (0.41-0.52) |" in line
    assert line.endswith("| 5 |")  # non-private 0.77 minus the best private mean 0.72
    assert "`ffa_lora-1-0`" in text and "`ffa_lora-1-1`" not in text
    assert "no isolated baseline" in text  # the gain column needs the isolated run


def test_findings_name_the_best_adapter_at_each_epsilon():
    rows = [
        _row("ffa_lora", None, 0, 0.78),
        _row("lora", None, 0, 0.80),
        _row("ffa_lora", 1, 0, 0.60),
        _row("ffa_lora", 1, 1, 0.56),
        _row("lora", 1, 0, 0.45),
    ]
    text = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows), {})
    assert "- non-private: lora (0.8), 2.0 points above ffa_lora" in text
    assert "- epsilon 1: ffa_lora (0.58), 13.0 points above lora" in text


def test_findings_say_whether_each_curve_falls_and_where_it_rises():
    rows = [
        _row("ffa_lora", None, 0, 0.80),
        _row("ffa_lora", 8, 0, 0.75),
        _row("ffa_lora", 1, 0, 0.60),
        _row("lora", None, 0, 0.80),
        _row("lora", 8, 0, 0.70),
        _row("lora", 4, 0, 0.72),
        _row("lora", 1, 0, 0.50),
    ]
    text = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows), {})
    assert "- ffa_lora: 0.8 > 0.75 > 0.6: falls at every step" in text
    assert "- lora: 0.8 > 0.7 > 0.72 > 0.5: rises 2.0 points from epsilon 8 to epsilon 4" in text
    one = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows[:1]), {})
    assert "- ffa_lora: 0.8: one epsilon done, no curve yet" in one


def test_a_rise_or_a_lead_says_whether_it_stands_clear_of_the_seeds_spread():
    rows = [
        _row("ia3", None, 0, 0.78),
        _row("ia3", None, 1, 0.76),
        _row("ia3", 8, 0, 0.72),
        _row("ia3", 8, 1, 0.74),
        _row("ia3", 4, 0, 0.735),  # above epsilon 8's mean, inside its range
        _row("ia3", 4, 1, 0.745),
        _row("lora", None, 0, 0.70),
        _row("lora", None, 1, 0.71),
        _row("lora", 8, 0, 0.75),  # above non-private's range: a rise beyond the spread
        _row("lora", 8, 1, 0.76),
    ]
    text = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows), {})
    assert (
        "- ia3: 0.77 > 0.73 > 0.74: rises 1.0 points from epsilon 8 to epsilon 4, "
        "within the seeds' spread (0.735-0.745 against 0.72-0.74)"
    ) in text
    assert (
        "- lora: 0.705 > 0.755: rises 5.0 points from non-private to epsilon 8, "
        "beyond the seeds' spread (0.75-0.76 against 0.7-0.71)"
    ) in text
    assert (
        "- non-private: ia3 (0.77), 6.5 points above lora, "
        "beyond the seeds' spread (0.76-0.78 against 0.7-0.71)"
    ) in text
    assert (
        "- epsilon 8: lora (0.755), 2.5 points above ia3, "
        "beyond the seeds' spread (0.75-0.76 against 0.72-0.74)"
    ) in text
    assert "- epsilon 4: " not in text  # one adapter there: nothing to rank


def test_a_single_seed_shows_its_value_alone():
    module = _script()
    assert module._spread([_row("lora", 8, 0, 0.5)]) == "0.5"
    assert module._spread([]) == "-"


def test_findings_of_an_unfinished_sweep_name_the_cells_not_yet_run():
    pending = {"cell": "lora-1-2", "status": "pending", EPS: 1, "seed": 2}
    rows = [_row("ffa_lora", None, 0, 0.78), _row("ffa_lora", 1, 0, 0.6), pending]
    text = _script().findings(SweepTable(("model.adapter", EPS, "seed"), rows), {})
    assert "**Incomplete: 2 of 3 cells done.** Not yet run: `lora-1-2`." in text
    done = [_row("ffa_lora", None, 0, 0.78)]
    assert "Incomplete" not in _script().findings(
        SweepTable(("model.adapter", EPS, "seed"), done), {}
    )


def test_cell_records_are_published_without_checkpoints_and_restored_where_unfinished(tmp_path):
    module = _script()
    work = tmp_path / "work"
    cell = work / "cells" / "a"
    (cell / "privacy").mkdir(parents=True)
    for name in module.CELL_RECORD:
        (cell / name).write_text(name)
    (cell / "checkpoints").mkdir()
    (cell / "checkpoints" / "round-0000.safetensors").write_text("weights")
    published = tmp_path / "audits" / "cells"
    module.publish_cells(work, published, ["a"])
    assert sorted(
        p.relative_to(published / "a").as_posix() for p in (published / "a").rglob("*.*")
    ) == sorted(module.CELL_RECORD)  # the record, no checkpoint
    fresh = tmp_path / "fresh"
    assert module.restore_cells(published, fresh, ["a", "b"]) == ["a"]
    assert (fresh / "cells" / "a" / "results.json").read_text() == "results.json"
    assert module.restore_cells(published, fresh, ["a"]) == []  # already finished there


ROOT = SCRIPT.parents[1]
README_MEANS = re.compile(
    r"(?<![-\w])(FFA-LoRA|LoRA|IA3) (0\.\d{3})(?: non-private)?, then "
    r"(0\.\d{3}), (0\.\d{3}), (0\.\d{3}), (0\.\d{3})"
)


def test_the_committed_sweep_recomputes_from_its_cells_and_the_docs_state_its_means():
    spec, base = load_spec(ROOT / "configs/sweeps/dp_curve.yaml")
    planned = [(c.id, c.swept) for c in plan_cells(spec, base)]
    table = collect_table(ROOT / "audits/sweeps", planned)  # from the committed cell records
    committed = {r["cell"]: r for r in csv.DictReader((ROOT / "audits/sweeps/table.csv").open())}
    assert len(table.done_rows()) == len(planned) == len(committed) == 45
    means: dict[str, dict[float, list[float]]] = {}
    for row in table.rows:
        assert float(committed[row["cell"]]["federated"]) == row["federated"], row["cell"]
        target = row[EPS] if row[EPS] is not None else math.inf
        assert row["eps_max"] <= target  # no cell spent more than its target
        means.setdefault(row["adapter"], {}).setdefault(target, []).append(row["federated"])
    names = {"FFA-LoRA": "ffa_lora", "LoRA": "lora", "IA3": "ia3"}
    for document in ("README.md", "docs/sweeps/index.md"):  # the front door and the sweeps page
        text = " ".join((ROOT / document).read_text().split())
        stated = {
            m.group(1): [float(v) for v in m.groups()[1:]] for m in README_MEANS.finditer(text)
        }
        assert sorted(stated) == sorted(names), document
        for name, values in stated.items():
            by_eps = means[names[name]]
            got = [statistics.mean(by_eps[e]) for e in (math.inf, 8, 4, 2, 1)]
            # three digits, a tie (0.6105) rounding either way
            assert all(abs(v - g) <= 5e-4 + 1e-12 for v, g in zip(values, got, strict=True)), (
                document,
                name,
            )
