"""One writer per run folder, a resume that refuses a changed record, a finished run's resume
that does nothing, and a plan that would train nothing refused before round 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kill_points import CrashAfterRound
from tiny_run import TINY as TINY_RUN

from securefed.audit import verify_run
from securefed.cli import main
from securefed.config import load_config
from securefed.errors import RunFolderError
from securefed.run.folder import ENERGY, RunFolder, checkpoint_rel
from securefed.run.lock import LOCK, RunLock
from securefed.run.simulate import simulate


@pytest.fixture(autouse=True)
def _audits_under_tmp(tmp_path, monkeypatch):
    """The CLI writes audits/<run>/ under the current directory: keep it in the test's."""
    monkeypatch.chdir(tmp_path)


TINY = [*TINY_RUN, "training.clients_per_round=3"]  # every institution, every round


def _argv(out: Path, *extra: str) -> list[str]:
    argv = ["simulate", "--quiet", "--out", str(out)]
    for override in [*TINY, *extra]:
        argv += ["--set", override]
    return argv


def _hashes(run_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()
    }


def test_a_second_writer_is_refused_naming_the_first_and_the_first_is_intact(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "securefed.cli", *_argv(out, "training.rounds=3")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "config.yaml").is_file():  # the first holds the folder from here on
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(tmp_path)
            code = main(_argv(out, "training.rounds=3"))
        error = capsys.readouterr().err.strip()
        assert first.poll() is None, "the first run ended before the second tried"
        assert code == 2
        assert len(error.splitlines()) == 1 and f"pid {first.pid}" in error, error
    finally:
        stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert [r["round"] for r in RunFolder(out).read_metrics()] == [0, 1, 2]
    assert verify_run(out).ok


def test_the_lock_names_its_holder_and_is_dropped_at_the_end(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with RunLock(tmp_path):  # the holder may take it again (its own audit)
            pass
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from securefed.run.lock import RunLock; RunLock({str(tmp_path)!r}).acquire()",
            ],
            capture_output=True,
            text=True,
        )
        assert probe.returncode != 0 and f"pid {os.getpid()}" in probe.stderr
    RunLock(tmp_path).acquire().release()  # free again


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    return simulate(load_config(overrides=TINY), out=str(out))[0]


def test_resume_refuses_a_swapped_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        simulate(load_config(overrides=TINY), out=str(out), progress=CrashAfterRound(0))
    (out / checkpoint_rel(0)).write_bytes((out / checkpoint_rel(None)).read_bytes())
    with pytest.raises(
        RunFolderError, match=r"checkpoints/round-0000.safetensors no longer matches"
    ):
        simulate(resume=str(out))


def test_resume_of_a_finished_run_does_nothing_and_says_so(finished_run, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(finished_run, tmp_path / "run")
    (copy / ENERGY).unlink()
    before = _hashes(copy)
    assert main(["simulate", "--resume", str(copy)]) == 0
    assert "the run finished" in capsys.readouterr().out
    assert _hashes(copy) == before  # energy.json is not rewritten
    assert ENERGY in [m.where for m in verify_run(copy).mismatches]


def test_a_plan_that_trains_nothing_is_refused_before_round_0(tmp_path, capsys):
    out = tmp_path / "run"
    dp = [
        "privacy.dp.enabled=true",
        "privacy.dp.noise_multiplier=0.6",
        "privacy.dp.target_epsilon=3",
    ]
    assert main(_argv(out, *dp)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    assert "nothing would train" in error and "privacy.dp.noise_multiplier" in error
    assert not out.exists()  # nothing written, no round 0


def test_a_full_disk_at_a_checkpoint_is_one_line_and_resume_finishes(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    import securefed.run.folder as folder_module

    out, real_save = tmp_path / "run", folder_module.save_file

    def full_disk(tensors, path, metadata=None):
        if "round-0001" in str(path):
            raise SafetensorError("Error while serializing: No space left on device (os error 28)")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(folder_module, "save_file", full_disk)
    assert main(_argv(out)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "No space left on device" in error, error
    assert "--resume" in error and not list(out.rglob("*.tmp"))
    monkeypatch.setattr(folder_module, "save_file", real_save)
    assert main(["simulate", "--quiet", "--resume", str(out)]) == 0
    assert [r["round"] for r in RunFolder(out).read_metrics()] == [0, 1]
    assert verify_run(out).ok
