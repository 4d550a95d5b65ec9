"""``securefed evaluate``: score a trained adapter on a task's test records, on one footing.

Like FlowerTune's medical and finance evaluations, the figure is the accuracy on a fixed test
split with its Wilson 95% interval and the split's size, so that an adapter trained here, in
another run or elsewhere can be compared with the same numbers:

- ``securefed evaluate RUN_DIR``: the run's final global adapter (``state.json``'s checkpoint,
  or ``--round N``) on the test records the run held out (every institution's test split,
  rebuilt from the run's own config and seed);
- ``--adapter FILE --config CONFIG``: an adapter vector saved as securefed saves one (a
  safetensors file holding ``adapter`` and its ``vector_spec_hash``), with the config that
  built it (backbone, adapter, layers: they fix the vector's spec, which must match);
- ``--set task.KEY=VALUE``: other records for the same adapter (``task.split=test``,
  ``task.path=...``): every record read is scored, none is held out or partitioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from torch.utils.data import Subset

from securefed.config import RunConfig, apply_overrides, load_config, validate
from securefed.errors import ConfigError, RunFolderError
from securefed.model.adapters import set_vector
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import encode_examples, labels_of, predict
from securefed.run.folder import CONFIG, STATE, RunFolder, read_json
from securefed.run.intervals import wilson_interval
from securefed.run.setup import adapter_model, load_and_partition

HELD_OUT = "held out by the run (every institution's test split)"


@dataclass(frozen=True)
class Evaluation:
    """An adapter's accuracy on ``n`` records, with its Wilson 95% interval."""

    task: str
    records: str  # which records were scored
    n: int
    accuracy: float
    low: float
    high: float
    adapter: str  # the file scored

    def line(self) -> str:
        return (
            f"{self.task}, {self.n} records {self.records}: accuracy {self.accuracy:.3f} "
            f"(95% CI {self.low:.3f}-{self.high:.3f}, n={self.n}); adapter {self.adapter}"
        )


def run_adapter(run_dir: str, round_index: int | None) -> tuple[RunConfig, Path]:
    """A run's resolved config and the checkpoint to score (its last committed round)."""
    folder = RunFolder(run_dir)
    if not folder.file(CONFIG).is_file():
        raise RunFolderError(f"{run_dir} is not a securefed run folder (no {CONFIG})")
    cfg = load_config(folder.file(CONFIG))
    if round_index is not None:
        return cfg, folder.file(folder.checkpoint_rel(round_index))
    state = folder.file(STATE)
    if not state.is_file():
        raise RunFolderError(f"{run_dir} has no {STATE}: no round was committed")
    return cfg, folder.file(read_json(state)["checkpoint"])


def read_adapter(path: Path) -> tuple[np.ndarray, str | None]:
    """The adapter vector in a securefed checkpoint and the spec hash it was saved with."""
    if not path.is_file():
        raise RunFolderError(f"adapter {path} is missing")
    try:
        with safe_open(str(path), framework="numpy") as f:
            if "adapter" not in f.keys():  # noqa: SIM118 (safe_open has keys(), no __contains__)
                raise RunFolderError(f"adapter {path} holds no 'adapter' tensor: not a securefed "
                                     "adapter file")  # fmt: skip
            return f.get_tensor("adapter"), (f.metadata() or {}).get("vector_spec_hash")
    except (SafetensorError, OSError) as exc:
        raise RunFolderError(f"adapter {path} cannot be read as safetensors ({exc})") from None


def with_task_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """``cfg`` with ``--set`` overrides, which may only name ``task.*`` keys (the records):
    every other key decides the model the adapter belongs to."""
    for item in overrides:
        if not item.startswith("task."):
            raise ConfigError(
                "--set", item, "task.KEY=VALUE only (the model and adapter come from the run)"
            )
    return validate(apply_overrides(cfg.model_dump(mode="json"), overrides))


def evaluate_adapter(cfg: RunConfig, adapter: Path, all_records: bool) -> Evaluation:
    """Score the adapter in ``adapter`` on ``cfg``'s task: the run's held-out test records, or
    (``all_records``) every record the task config reads."""
    vector, spec_hash = read_adapter(adapter)
    task, examples, shards = load_and_partition(cfg)
    bundle = adapter_model(cfg, task)
    if spec_hash != bundle.spec.hash or vector.shape != (bundle.spec.size,):
        raise RunFolderError(
            f"adapter {adapter} (spec {str(spec_hash)[:12]}, {vector.size} values) was not "
            f"made for this config's model (spec {bundle.spec.hash[:12]}, {bundle.spec.size} "
            "values): pass the config it was trained with"
        )
    if not all_records:
        examples = [examples[i] for s in shards.clients for i in s.test]
    rows = encode_examples(examples, task, bundle, cfg.model.max_length)
    batch = cfg.training.eval_batch_size
    scorer, rows = scorer_and_rows(bundle, rows, cfg.model.adapter_layers, batch)
    set_vector(bundle.model, vector, bundle.spec)
    data = Subset(rows, range(len(examples)))
    hits = predict(scorer, data, batch) == labels_of(data)
    accuracy = float(hits.mean())
    low, high = wilson_interval(accuracy, len(examples))
    records = f"read by task config (split {cfg.task.split})" if all_records else HELD_OUT
    return Evaluation(task.name, records, len(examples), accuracy, low, high, str(adapter))
