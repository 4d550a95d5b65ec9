"""The README's numbers are what the default prints: `securefed simulate` with each arm's
learning rate tuned (``TUNED``, the grid the README names; docs/heterogeneity.md).

The default is bit-for-bit repeatable on one machine (client sampling, data order, dropouts
and the secure-aggregation rounding are seeded; masks cancel exactly; DP is off), so the only
room left is floating-point summation order across CPUs and BLAS builds: TOLERANCE.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from securefed.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TOLERANCE = 0.02  # stated in the README beside the numbers
ARMS = ("federated", "centralized", "isolated")
TUNED = "training.lr_grid=[0.001,0.003]"  # the README names this grid
# a row of the README's results table: | federated | 0.780 |
STATED = re.compile(
    r"^\| (?P<arm>federated|centralized|isolated) \| (?P<accuracy>0\.\d{3}) \|$", re.M
)


def _readme_numbers() -> dict[str, float]:
    text = README.read_text()
    stated = {m["arm"]: float(m["accuracy"]) for m in STATED.finditer(text)}
    assert sorted(stated) == sorted(ARMS), "the README's results table lost a row: " + str(stated)
    flat = " ".join(text.split())  # the sentence may wrap anywhere
    assert f"within {TOLERANCE}" in flat, "the README must state the tolerance the test uses"
    assert TUNED in flat, "the README must name the grid the test uses"
    return stated


def test_the_default_run_prints_the_readme_numbers(tmp_path, monkeypatch, capsys):
    stated = _readme_numbers()
    monkeypatch.chdir(tmp_path)  # the audit goes to ./audits, as for a user
    assert main(["simulate", "--quiet", "--out", str(tmp_path / "run"), "--set", TUNED]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    # Every arm chose the default's own rate (the README says so): the untuned default trains
    # the very same arms, so these numbers are its numbers too.
    assert set(results["tuning"]["lr"].values()) == {0.003}, results["tuning"]
    got = {name: results[name]["pooled"]["accuracy"] for name in stated}
    for name, value in stated.items():
        assert got[name] == pytest.approx(value, abs=TOLERANCE), (name, got)
    printed = capsys.readouterr().out
    for name, value in got.items():  # and the table shows what results.json holds
        assert re.search(rf"{name}\s*│\s*{value:.3f}", printed), (name, printed)
