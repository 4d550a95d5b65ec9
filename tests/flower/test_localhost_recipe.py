"""``deploy/localhost.py``, the one-command recipe: its config is valid for the embedded
default, and a bad ``--set`` is one line and exit 2 before any Flower process starts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from securefed.config import load_config

RECIPE = Path(__file__).resolve().parents[2] / "deploy" / "localhost.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("localhost_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("institutions", [2, 3, 5])
def test_the_embedded_default_is_valid_for_any_number_of_institutions(institutions):
    cfg = load_config(None, _recipe().localhost_overrides(institutions, []))
    assert cfg.partition.num_clients == cfg.training.clients_per_round == institutions


def test_a_bad_override_is_one_line_and_exit_2(tmp_path):
    run = subprocess.run(
        [sys.executable, str(RECIPE), "--set", "training.rounds=0", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert "training.rounds" in run.stderr and "Traceback" not in run.stderr
    assert not any(tmp_path.iterdir())  # nothing started


def test_a_workdir_that_is_a_file_is_one_line_and_exit_2(tmp_path):
    workdir = tmp_path / "taken"
    workdir.write_text("not a folder")
    run = subprocess.run(
        [sys.executable, str(RECIPE), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "--workdir" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and workdir.read_text() == "not a folder"


@pytest.mark.slow
def test_the_recipe_runs_and_its_audit_verifies(tmp_path):
    """The recipe end to end (every component its own process): its audit verifies, states
    the adversary the nodes ran with (identities on), and the run folder verifies."""
    from securefed.audit import verify_audit, verify_run

    tiny = [
        "task.synthetic.num_examples=120",
        "training.rounds=2",
        "training.local_steps=2",
        "training.batch_size=8",
        "model.max_length=32",
    ]
    argv = [sys.executable, str(RECIPE), "--workdir", str(tmp_path / "fed"), "--timeout", "1500"]
    for override in tiny:
        argv += ["--set", override]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("verdict: ") and last.endswith("verified"), last
    assert "against a server that lies in its lists" in last
    verification = verify_run(tmp_path / "fed" / "run")
    assert verification.ok, verification.mismatches
    assert verify_audit(tmp_path / "fed" / "audit").ok
    audit = json.loads((tmp_path / "fed" / "audit" / "audit.json").read_text())
    protocol = audit["secure_aggregation"]["protocol"]
    assert protocol["adversary"] == "semi_malicious" and protocol["identities"] is True
    assert "curious_server_only" not in [f["code"] for f in audit["flags"]]
    by_round = audit["privacy"]["epsilon_by_round"]
    assert by_round and all(e == "inf" for r in by_round for e in r["clients"].values())
