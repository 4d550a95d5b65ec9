"""``deploy/localhost.py``, the one-command recipe: its config is valid for the embedded
default, and a bad ``--set`` is one line and exit 2 before any Flower process starts."""

from __future__ import annotations

import importlib.util
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
