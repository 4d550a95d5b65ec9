"""Quiet output: each warning once per run (and kept for the run folder), no library
progress bars between ours."""

from __future__ import annotations

import io
import warnings

from fixtures_data import FPB_ROWS, write_rows
from rich.console import Console

from securefed.config import TaskConfig
from securefed.run.run_warnings import RunWarnings
from securefed.tasks import get_task


def test_a_warning_repeated_every_round_is_shown_and_kept_once():
    shown = io.StringIO()
    with RunWarnings(Console(file=shown, width=200)) as run_warnings:
        for _round in range(3):
            for _institution in range(4):
                with warnings.catch_warnings():  # what Opacus and our DP wrapper do each time
                    warnings.filterwarnings("ignore", message="Full backward hook")
                warnings.warn("DP-SGD without secure_mode", UserWarning, stacklevel=1)
        warnings.warn("another", RuntimeWarning, stacklevel=1)
    lines = shown.getvalue().splitlines()
    assert lines == ["warning: DP-SGD without secure_mode", "warning: another"]
    assert run_warnings.records == [
        {"category": "UserWarning", "message": "DP-SGD without secure_mode"},
        {"category": "RuntimeWarning", "message": "another"},
    ]
    assert warnings.showwarning is not run_warnings._show  # restored on exit


def test_a_resumed_run_keeps_its_earlier_warnings_and_does_not_repeat_them():
    earlier = [{"category": "UserWarning", "message": "seen before the kill"}]
    shown = io.StringIO()
    with RunWarnings(Console(file=shown), earlier) as run_warnings:
        warnings.warn("seen before the kill", UserWarning, stacklevel=1)
    assert shown.getvalue() == "" and run_warnings.records == earlier


def test_reading_a_data_file_prints_no_library_progress_bar(tmp_path, capfd):
    from securefed.cli import _quiet_libraries

    _quiet_libraries()
    path = write_rows(FPB_ROWS, tmp_path / "fpb.csv")
    capfd.readouterr()
    get_task("fpb").load(TaskConfig(name="fpb", path=str(path)), seed=0)
    err = capfd.readouterr().err
    assert "Generating" not in err and "%|" not in err, err
