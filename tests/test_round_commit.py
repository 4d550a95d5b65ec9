"""A kill at any instant of a round, a torn record, a damaged state file: ``--resume`` ends
exactly like the run that was never interrupted (secure aggregation and DP off, so the two
are bit-for-bit comparable; securefed.run.resume explains the commit order)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_run import TINY

import securefed.run.folder as folder_module
from securefed.audit import verify_run
from securefed.cli import main
from securefed.config import load_config
from securefed.run.folder import RunFolder
from securefed.run.simulate import simulate

NOT_REPEATABLE = {"wall_s", "cpu_s", "timing", "energy", "record_hash", "prev_hash", "resumed"}


class Killed(BaseException):
    """The process dying: nothing catches it."""


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in NOT_REPEATABLE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _spy_writes(monkeypatch, kill_after: int | None = None) -> list[str]:
    """Every file write of the run, in order; ``Killed`` right after write ``kill_after``."""
    writes: list[str] = []
    text_write, adapter_write = folder_module.atomic_write_text, RunFolder.save_adapter
    server_write = RunFolder.save_server_state

    def record(name: str) -> None:
        writes.append(name)
        if kill_after is not None and len(writes) - 1 == kill_after:
            raise Killed(name)

    def atomic_write_text(path, text):
        text_write(path, text)
        record(f"{path.parent.name}/{path.name}")

    def save_adapter(self, rel, vector, spec_hash):
        digest = adapter_write(self, rel, vector, spec_hash)
        record(rel)
        return digest

    def save_server_state(self, rel, state):
        server_write(self, rel, state)
        record(rel)

    monkeypatch.setattr(folder_module, "atomic_write_text", atomic_write_text)
    monkeypatch.setattr(RunFolder, "save_adapter", save_adapter)
    monkeypatch.setattr(RunFolder, "save_server_state", save_server_state)
    return writes


def _outcome(run_dir) -> dict:
    folder = RunFolder(run_dir)
    return {
        "results": _strip(json.loads((run_dir / "results.json").read_text())),
        "metrics": _strip(folder.read_metrics()),
        "ledgers": json.loads((run_dir / "privacy/ledgers.json").read_text()),
        "final": folder.load_adapter("checkpoints/round-0001.safetensors"),
    }


def _assert_same(resumed: dict, reference: dict) -> None:
    assert resumed["metrics"] == reference["metrics"]
    assert resumed["ledgers"] == reference["ledgers"]
    assert resumed["results"] == reference["results"]
    assert np.array_equal(resumed["final"], reference["final"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the index of every write it made during round 1."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        writes = _spy_writes(monkeypatch)
        run_dir, _ = simulate(load_config(overrides=TINY), out=str(root / "run"))
    states = [i for i, w in enumerate(writes) if w.endswith("state.json")]  # setup, r0, r1
    round1 = list(range(states[1], states[2] + 1))  # kill after each of these writes
    assert writes[states[1] + 1 : states[2] + 1] == [
        "checkpoints/round-0001.safetensors",
        "privacy/ledgers.json",
        "run/metrics.jsonl",
        "run/state.json",
    ]
    return _outcome(run_dir), round1


def _killed_then_resumed(
    monkeypatch, overrides: list[str], kill_after: int, tmp_path: Path
) -> Path:
    """A run of ``overrides`` killed after its ``kill_after``-th write, then resumed: its folder."""
    out = tmp_path / f"killed-after-{kill_after}"
    with monkeypatch.context() as patch:
        _spy_writes(patch, kill_after)
        with pytest.raises(Killed):
            simulate(load_config(overrides=overrides), out=str(out))
    simulate(resume=str(out))
    return out


def test_a_kill_between_any_two_writes_of_a_round_resumes_to_the_same_run(
    reference, tmp_path, monkeypatch
):
    expected, round1 = reference
    for kill_after in round1:  # before round 1's first write, between each pair, after its last
        out = _killed_then_resumed(monkeypatch, TINY, kill_after, tmp_path)
        _assert_same(_outcome(out), expected)


FEDADAM = [*TINY, "training.server_optimizer.name=fedadam", "training.server_lr=0.01"]


def test_a_kill_mid_run_with_fedadam_resumes_to_the_same_run(tmp_path, monkeypatch):
    """FedAdam's moments are part of each round's commit: a run killed inside round 1 (after
    its checkpoint, after its optimizer state, after its metrics record) and resumed takes
    round 1's step from round 0's committed moments, as the uninterrupted run did."""
    with monkeypatch.context() as patch:
        writes = _spy_writes(patch)
        run_dir, _ = simulate(load_config(overrides=FEDADAM), out=str(tmp_path / "reference"))
    expected = _outcome(run_dir)
    assert verify_run(run_dir).ok  # the optimizer's state files are in the hash chain
    states = [i for i, w in enumerate(writes) if w.endswith("state.json")]  # setup, r0, r1
    round1 = writes[states[1] + 1 : states[2] + 1]
    assert round1[:2] == [
        "checkpoints/round-0001.safetensors",
        "checkpoints/server-0001.safetensors",
    ]
    for kill_after in range(states[1] + 1, states[2]):
        out = _killed_then_resumed(monkeypatch, FEDADAM, kill_after, tmp_path)
        _assert_same(_outcome(out), expected)


def test_a_torn_metrics_record_is_dropped_and_its_round_trained_again(
    reference, tmp_path, monkeypatch, capsys
):
    expected, round1 = reference
    out = tmp_path / "torn"
    with monkeypatch.context() as patch:
        _spy_writes(patch, round1[-1])  # killed after round 1 committed, before results.json
        with pytest.raises(Killed):
            simulate(load_config(overrides=TINY), out=str(out))
    metrics = out / "metrics.jsonl"
    *whole, last = metrics.read_text().splitlines()
    metrics.write_text("\n".join(whole) + "\n" + last[: len(last) // 2])  # half a line
    monkeypatch.setenv("COLUMNS", "200")  # the note on one line
    monkeypatch.chdir(tmp_path)  # the audit goes to ./audits, not into the repository
    assert main(["simulate", "--resume", str(out)]) == 0
    assert "metrics.jsonl line 2 of 2 is torn or altered: dropped" in capsys.readouterr().err
    _assert_same(_outcome(out), expected)


def test_a_damaged_state_file_is_rebuilt_from_the_intact_records(reference, tmp_path, monkeypatch):
    expected, round1 = reference
    out = tmp_path / "damaged"
    with monkeypatch.context() as patch:
        _spy_writes(patch, round1[3])  # round 1's metrics record written, state not yet
        with pytest.raises(Killed):
            simulate(load_config(overrides=TINY), out=str(out))
    state = out / "state.json"
    state.write_text(state.read_text()[:20])  # a torn JSON file
    simulate(resume=str(out))
    _assert_same(_outcome(out), expected)


@pytest.mark.parametrize("edit", ["config.yaml", "partition.json"])
def test_resume_refuses_a_run_whose_setup_files_changed(
    reference, tmp_path, monkeypatch, capsys, edit
):
    _, round1 = reference
    out = tmp_path / "edited"
    with monkeypatch.context() as patch:
        _spy_writes(patch, round1[0])
        with pytest.raises(Killed):
            simulate(load_config(overrides=TINY), out=str(out))
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    path = out / edit
    path.write_text(path.read_text().replace("0", "1", 1))
    assert main(["simulate", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{edit} no longer matches the file this run started with" in err
    assert "Traceback" not in err
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()  # nothing trained, nothing written


def test_a_run_killed_before_its_first_round_leaves_a_clear_way_forward(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "early"
    with monkeypatch.context() as patch:
        _spy_writes(patch, 0)  # the first setup write
        with pytest.raises(Killed):
            simulate(load_config(overrides=TINY), out=str(out))
    assert main(["simulate", "--resume", str(out)]) == 2
    assert "stopped before its first round was recorded" in capsys.readouterr().err
    shutil.rmtree(out)


@pytest.mark.parametrize("out_exists", [False, True], ids=["new_out", "empty_out"])
def test_a_run_failing_in_its_first_round_leaves_the_disk_as_it_was(
    out_exists, tmp_path, monkeypatch, capsys
):
    from securefed.errors import ConfigError
    from securefed.run.inprocess import InProcessTransport

    def fail(*args, **kwargs):
        raise ConfigError("training.clients_per_round", 1, "at least 2 with secure aggregation")

    monkeypatch.setattr(InProcessTransport, "train_and_aggregate", fail)
    if out_exists:
        (tmp_path / "run").mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = [arg for item in TINY for arg in ("--set", item)]
    code = main(["simulate", "--out", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "training.clients_per_round" in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_run_failing_after_a_committed_round_keeps_its_folder_for_resume(tmp_path, monkeypatch):
    from securefed.run.inprocess import InProcessTransport

    real, calls = InProcessTransport.train_and_aggregate, []

    def fail_in_round_1(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("round 1 failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InProcessTransport, "train_and_aggregate", fail_in_round_1)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        simulate(load_config(overrides=TINY), out=str(out))
    assert json.loads((out / "state.json").read_text())["next_round"] == 1
