"""The baselines train in forked worker processes while the federation runs.

Centralized, isolated and the federation are independent given the run's setup: each starts
from the same initial adapter, draws its batches from generators seeded by the run's seed and
its own tag, and keeps its own privacy ledgers (``securefed.baselines``). So each configured
baseline that is not yet on disk runs in its own process, forked after the setup is built (the
workers inherit the loaded backbone and the cached prefix activations instead of rebuilding
them), while this process runs the rounds. Every process uses one intra-op thread: three
CPU-bound processes on two cores do not oversubscribe them the way 2 x 3 threads would, and a
fixed thread count keeps every number the same run to run. A forked worker draws its DP noise
from fresh OS entropy like any other training call; nothing protective is inherited.

Only on CPU with more than one core; elsewhere (CUDA, one core) the baselines run after the
federation in this process, as before. Either way the results are written and logged here.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os

import torch

from securefed.errors import SecurefedError
from securefed.run.baselines import RUNNERS
from securefed.run.folder import RunFolder, baseline_rel, read_json, write_json
from securefed.run.progress import Progress
from securefed.run.setup import RunSetup, resolve_device

_FORKED_SETUPS: dict[str, RunSetup] = {}  # what a forked worker inherits: each baseline's setup


def one_thread() -> None:
    """A worker's torch threads: one (a fixed count keeps every number the same run to run)."""
    torch.set_num_threads(1)


def _run_in_worker(name: str) -> dict:
    """One baseline's result; a user error comes back as its one-line message (securefed's
    errors take several constructor arguments, so they do not survive pickling as such)."""
    assert name in _FORKED_SETUPS, "worker started without a setup"
    try:
        return RUNNERS[name](_FORKED_SETUPS[name], Progress(enabled=False))
    except SecurefedError as exc:
        return {_ERROR: str(exc)}


_ERROR = "securefed_error"


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class BackgroundBaselines:
    """Context manager: on enter, start every missing baseline (in workers where possible);
    ``results()`` after the federation returns all of them, from disk or freshly run.
    ``rates``: a baseline's learning rate where ``run.tuning`` chose one."""

    def __init__(
        self,
        setup: RunSetup,
        folder: RunFolder,
        progress: Progress,
        rates: dict[str, float] | None = None,
    ) -> None:
        self.setup, self.folder, self.progress = setup, folder, progress
        self.setups = {
            name: setup.with_lr(rates[name]) if rates and name in rates else setup
            for name in setup.cfg.baselines
        }
        self.missing = [
            name for name in setup.cfg.baselines if not folder.file(baseline_rel(name)).is_file()
        ]
        self.parallel = (
            bool(self.missing)
            and resolve_device(setup.cfg.training.device) == "cpu"
            and usable_cores() > 1
        )
        self._pool: multiprocessing.pool.Pool | None = None
        self._pending: dict[str, multiprocessing.pool.AsyncResult] = {}
        self._threads = torch.get_num_threads()

    def __enter__(self) -> BackgroundBaselines:
        global _FORKED_SETUPS
        if self.parallel:
            _FORKED_SETUPS = self.setups
            one_thread()
            self._pool = multiprocessing.get_context("fork").Pool(
                len(self.missing), initializer=one_thread
            )
            self._pending = {
                name: self._pool.apply_async(_run_in_worker, (name,)) for name in self.missing
            }
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        global _FORKED_SETUPS
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:  # an interrupted or failed run does not wait for its baselines
                self._pool.terminate()
            self._pool.join()  # waited-for workers: their CPU time is in energy.json
            self._pool = None
        _FORKED_SETUPS = {}
        torch.set_num_threads(self._threads)

    def results(self) -> dict[str, dict]:
        """Every configured baseline's result, in config order; new ones are written and logged."""
        out: dict[str, dict] = {}
        for name in self.setup.cfg.baselines:
            path = self.folder.file(baseline_rel(name))
            if name not in self.missing:
                out[name] = read_json(path)
                continue
            if name in self._pending:
                result = self._pending[name].get()
                if _ERROR in result:
                    raise SecurefedError(result[_ERROR])
            else:
                result = RUNNERS[name](self.setups[name], self.progress)
            write_json(path, result)
            out[name] = result
            self.progress.log(f"{name}: pooled {self.progress.metrics(result['pooled'])}")
        return out
