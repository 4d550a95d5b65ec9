"""Shared setup and checks of the Flower tests: a tiny embedded default, and the aggregate
recomputed from what each node kept of its own updates."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from securefed.config import RunConfig
from securefed.flower.localhost import LocalFederation
from securefed.run.folder import RunFolder

TINY = [
    "task.synthetic.num_examples=120",
    "training.rounds=2",
    "training.local_steps=2",
    "model.max_length=32",
    "training.batch_size=8",
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "baselines=[]",
]
INSTITUTIONS = [0, 1, 2]


def node_runs(state_root: Path, run_id: int) -> dict[int, Path]:
    return {i: state_root / f"node-{i}" / f"run-{run_id}" for i in INSTITUTIONS}


def check_aggregates(cfg: RunConfig, run_dir: Path, nodes: dict[int, Path]) -> list[float]:
    """Each round's global step equals the weighted mean of the survivors' own updates (clipped
    as the encoder clips them) within the quantization error; returns the errors."""
    quantization = cfg.secure_aggregation.params().quantization
    folder = RunFolder(run_dir)
    previous = folder.load_adapter(folder.checkpoint_rel(None)).astype(np.float64)
    errors = []
    for record in folder.read_metrics():
        r, survivors = record["round"], record["aggregated"]
        current = folder.load_adapter(folder.checkpoint_rel(r)).astype(np.float64)
        step = (current - previous) / cfg.training.server_lr
        weights = {
            i: _node_record(nodes[i], r, "advertise_keys")["train"]["weight"] for i in survivors
        }
        total = np.zeros_like(step)
        for i in survivors:
            delta = load_file(str(nodes[i] / f"updates/round-{r:04d}.safetensors"))["adapter"]
            delta = delta.astype(np.float64)
            delta *= min(1.0, quantization.clip_norm / np.linalg.norm(delta))
            total += weights[i] * delta
        expected = total / sum(weights.values())
        bound = len(survivors) / quantization.delta_scale / sum(weights.values())
        error = float(np.max(np.abs(step - expected)))
        assert error <= bound + 1e-6, (r, error, bound)  # + float32 rounding of the global
        errors.append(error)
        previous = current
    return errors


def _node_record(node_dir: Path, round_index: int, stage: str) -> dict:
    for record in RunFolder(node_dir).read_metrics():
        if record["round"] == round_index and record.get("stage") == stage:
            return record
    raise AssertionError(f"{node_dir} has no {stage} record for round {round_index}")


def wait_for_stage(
    fed: LocalFederation, run_id: int, run_dir: Path, round_index: int, stage: str, timeout_s: float
) -> dict:
    """Block until the server reports ``stage`` of ``round_index`` closed; fail at once, with
    the run's log, if the run finishes first (a run that aborted never gets there).

    The run's status (``LocalFederation.status``, a Control API request that can take a
    while on a loaded machine) is asked in a background thread: the progress file is read
    every 0.1 s throughout, and a caller that acts on the stage (kills a node before the next
    one, which now takes well under a second) acts within that, not after a status request
    that let the next stage finish unseen. The server appends to the file as this reads it:
    only whole lines are read."""
    path = run_dir / "flower" / "progress.jsonl"
    deadline = time.monotonic() + timeout_s
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        status = pool.submit(fed.status, run_id)
        next_status = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for event in _progress_events(path):
                if event.get("round") == round_index and event.get("stage") == stage:
                    return event
            if status.done():
                if status.result().startswith("finished"):
                    raise AssertionError(
                        f"run {run_id} {status.result()} before stage {stage} of round "
                        f"{round_index}:\n{fed.log(run_id)}"
                    )
                if time.monotonic() >= next_status:
                    status = pool.submit(fed.status, run_id)
                    next_status = time.monotonic() + 5.0
            time.sleep(0.1)
    finally:
        pool.shutdown(wait=False)  # a status call still running must not delay the caller
    raise AssertionError(f"stage {stage} of round {round_index} not reached in {timeout_s} s")


def _progress_events(path: Path) -> list[dict]:
    """The events of the server's progress file, up to its last whole line: a line the
    server is still writing is read at the next look, not parsed half-written."""
    text = path.read_text() if path.is_file() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
