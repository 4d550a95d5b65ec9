"""``securefed evaluate``: a finished run's adapter scored again on its held-out test records
gives the run's own figure, with its interval and size; a missing, corrupt or foreign adapter
is one line (exit 2), not a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file
from test_simulate import TINY  # the same tiny federation

from securefed.cli import EXIT_USER_ERROR, main
from securefed.config import load_config
from securefed.run.simulate import simulate


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_dir, results = simulate(load_config(overrides=TINY), out=str(out))
    return run_dir, results


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_run_scores_again_to_its_own_pooled_accuracy(tiny_run, tmp_path, capsys):
    run_dir, results = tiny_run
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run_dir), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    partition = json.loads((run_dir / "partition.json").read_text())
    held_out = sum(c["test_size"] for c in partition["clients"])
    assert got["n"] == held_out
    assert got["accuracy"] == pytest.approx(results["federated"]["pooled"]["accuracy"])
    assert got["low"] <= got["accuracy"] <= got["high"] and got["high"] - got["low"] > 0
    assert f"n={held_out}" in capsys.readouterr().out
    # the untrained start is another adapter, scored on the same records
    assert main(["evaluate", str(run_dir), "--round", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == held_out


def test_a_saved_adapter_with_its_config_scores_every_record_read(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "eval.json"
    adapter = run_dir / "checkpoints" / "round-0001.safetensors"
    args = ["evaluate", "--adapter", str(adapter), "--config", str(run_dir / "config.yaml")]
    assert main([*args, "--set", "task.synthetic.num_examples=50", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 50


def test_missing_corrupt_or_foreign_adapters_are_one_line(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    config = str(run_dir / "config.yaml")
    missing = tmp_path / "none.safetensors"
    assert main(["evaluate", "--adapter", str(missing), "--config", config]) == EXIT_USER_ERROR
    assert "missing" in _one_error_line(capsys)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    assert main(["evaluate", "--adapter", str(corrupt), "--config", config]) == EXIT_USER_ERROR
    assert "cannot be read" in _one_error_line(capsys)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"adapter": np.zeros(7, dtype=np.float32)}, str(foreign), {"vector_spec_hash": "x"})
    assert main(["evaluate", "--adapter", str(foreign), "--config", config]) == EXIT_USER_ERROR
    assert "was not made for this config's model" in _one_error_line(capsys)
    assert main(["evaluate", str(tmp_path)]) == EXIT_USER_ERROR
    assert "not a securefed run folder" in _one_error_line(capsys)
    assert main(["evaluate", str(run_dir), "--set", "model.lora_r=4"]) == EXIT_USER_ERROR
    assert "task.KEY=VALUE only" in _one_error_line(capsys)
