"""Running a sweep's cells: one after another in this process, or in spawned worker processes.

Each cell is finished by ``run_cell``, which needs only the cell's folder and config, so a
cell runs the same way in this process, in a worker, or after a kill. A cell that fails
leaves its traceback in ``error.txt`` and the other cells go on; rerunning the sweep retries it.
"""

from __future__ import annotations

import os
import shutil
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from securefed.config import validate
from securefed.run.folder import RESULTS, STATE


class CellJob(NamedTuple):
    """What a worker needs to finish one cell: its id, folder and resolved config (YAML)."""

    cell_id: str
    cell_dir: str
    config_yaml: str

    def done(self) -> bool:
        return (Path(self.cell_dir) / RESULTS).is_file()


def run_cell(cell_dir: str, config_yaml: str) -> str | None:
    """Finish one cell's run folder; returns None, or the error that stopped it.

    ``results.json`` present: nothing to do. ``state.json`` present: resume. Otherwise the
    folder (if any) holds a run killed before its first state write and is started afresh.
    """
    from securefed.run.simulate import simulate  # lazy: torch stays out of the CLI's start

    folder = Path(cell_dir)
    if (folder / RESULTS).is_file():
        return None
    error_file = folder / "error.txt"
    error_file.unlink(missing_ok=True)
    try:
        if (folder / STATE).is_file():
            simulate(resume=str(folder))
        else:
            shutil.rmtree(folder, ignore_errors=True)
            simulate(validate(yaml.safe_load(config_yaml)), out=str(folder))
    except Exception as exc:  # one cell's failure must not lose the others; kept in error.txt
        folder.mkdir(parents=True, exist_ok=True)
        error_file.write_text(traceback.format_exc())
        return f"{type(exc).__name__}: {exc}"
    return None


def run_cells(jobs: list[CellJob], workers: int, console: Console) -> dict[str, str]:
    """Finish every unfinished job, ``workers`` at a time; returns ``{cell_id: error}``."""
    pending = [job for job in jobs if not job.done()]
    with CellsBar(console, total=len(jobs), done=len(jobs) - len(pending)) as bar:
        if workers > 1:
            return _run_parallel(pending, workers, bar)
        failed: dict[str, str] = {}
        for job in pending:
            bar.update(running=1)
            error = run_cell(job.cell_dir, job.config_yaml)
            bar.finished(job.cell_id, error)
            if error:
                failed[job.cell_id] = error
        return failed


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_parallel(pending: list[CellJob], workers: int, bar: CellsBar) -> dict[str, str]:
    """One fresh spawned process per cell (so peak memory is per cell), ``workers`` at a time."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    failed: dict[str, str] = {}
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_limit_threads,
        initargs=(threads,),
        max_tasks_per_child=1,
    ) as pool:
        futures: dict[Future, str] = {
            pool.submit(run_cell, job.cell_dir, job.config_yaml): job.cell_id for job in pending
        }
        try:
            while futures:
                bar.update(running=sum(f.running() for f in futures))
                done, _ = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    cell_id = futures.pop(future)
                    error = future.result()
                    bar.finished(cell_id, error)
                    if error:
                        failed[cell_id] = error
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failed


class CellsBar:
    """One progress line: cells done, running and left; a log line per finished cell."""

    def __init__(self, console: Console, total: int, done: int) -> None:
        self.total, self.done, self.running = total, done, 0
        self._bars = RichProgress(
            TextColumn("cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bars.add_task("cells", total=total, completed=done, status="")

    def __enter__(self) -> CellsBar:
        self._bars.__enter__()
        self.update(running=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.__exit__(*exc)

    def update(self, running: int) -> None:
        self.running = running
        left = self.total - self.done - running
        status = f"{self.done} done, {running} running, {left} left"
        self._bars.update(self._task, completed=self.done, status=status)

    def finished(self, cell_id: str, error: str | None) -> None:
        self.done += 1
        self.update(running=max(0, self.running - 1))
        outcome = f"[red]failed[/red]: {error}" if error else "done"
        self._bars.console.log(f"cell {cell_id}: {outcome}")
