"""The records a run writes, typed: one metrics line per round, the environment, the results.

Both transports build them here, so ``securefed simulate`` and a Flower run write the same
shapes (the audit and ``--verify`` read either). The dicts stay plain JSON on disk; the
TypedDicts below say which keys each one has. Torch-free: the model is passed in already
summarised (``ModelFacts``).
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import dataclass
from typing import Any, TypedDict

from securefed.config import RunConfig

LIBRARIES = (
    "securefed",
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "opacus",
    "dp-accounting",
    "cryptography",
    "flwr",
    "datasets",
    "numpy",
)


class EvalMetrics(TypedDict):
    """Metrics of one adapter: on the pooled test set, and per client id."""

    pooled: dict[str, float]
    clients: dict[str, dict[str, float]]


class _RoundRecordKeys(TypedDict):
    round: int
    sampled: list[int]
    budget_stopped: list[int]
    aggregated: list[int]
    train_loss: float | None
    global_adapter_sha256: str
    eval: EvalMetrics | None
    epsilon: dict[str, float | str]
    bytes: dict[str, dict[str, int]]
    wall_s: float
    cpu_s: float
    artefacts: dict[str, str]
    prev_hash: str
    record_hash: str


class RoundRecord(_RoundRecordKeys, total=False):
    """One line of ``metrics.jsonl`` (``prev_hash`` and ``record_hash`` added on append; the
    keys above are required, ``run.contract`` checks them when the line is read)."""

    stage_wall_s: dict[str, float]  # Flower only: per protocol stage
    skipped: str  # only when the round was skipped before anyone trained: why


class TaskFacts(TypedDict):
    name: str
    synthetic: bool
    primary_metric: str


class FederatedResults(TypedDict):
    pooled: dict[str, float] | None
    clients: dict[str, dict[str, float]] | None
    rounds: int
    pooled_by_round: list[dict[str, float]] | None


class BaseWeights(TypedDict):
    before: str
    after: str
    unchanged: bool


class _ResultsKeys(TypedDict):
    name: str
    task: TaskFacts
    adapter: str
    backbone: str
    trainable_parameters: int
    federated: FederatedResults
    privacy: dict[str, Any]
    secure_aggregation: dict[str, Any]


class Results(_ResultsKeys, total=False):
    """``results.json``: what the closing table, the sweep table and the audit read. The keys
    above are in every run's (``federated_results``); the transport adds those below."""

    centralized: dict[str, Any]
    isolated: dict[str, Any]
    zero_shot: dict[str, Any]
    tuning: dict[str, Any]  # training.lr_grid set: tuning.json (run.tuning)
    base_weights: BaseWeights
    transport: dict[str, Any]
    timing: dict[str, Any]
    energy: dict[str, Any]


class _LedgersKeys(TypedDict):
    dp_enabled: bool | None
    accountant: str | None
    noise_multipliers: dict[str, float]
    ledgers: dict[str, dict[str, Any]]  # institution id -> ``PrivacyLedger.to_json()``


class LedgersFile(_LedgersKeys, total=False):
    """``privacy/ledgers.json``: ``privacy.budget.ClientPrivacy.to_json`` (simulate), or the
    nodes' ledgers filed together (Flower, ``source: nodes``)."""

    noise_sources: list[str]
    institution: dict[str, Any]  # privacy.distributed on: the institution-level ledger
    source: str


class _EnvironmentKeys(TypedDict):
    libraries: dict[str, str]
    platform: str
    device: str
    backbone: str
    model_kind: str
    vector_spec: dict[str, Any]
    vector_spec_hash: str
    base_weights_sha256: str


class EnvironmentFile(_EnvironmentKeys, total=False):
    """``environment.json`` (``environment``): plus what the transport adds."""

    task: dict[str, Any]  # in process: the task's name and whether it is synthetic
    transport: dict[str, Any]  # Flower: the engine, the run id, whether the server evaluates


class _PartitionClientKeys(TypedDict):
    client: int
    test_size: int
    test_labels: dict[str, int]


class PartitionClient(_PartitionClientKeys, total=False):
    """One institution in ``partition.json``; the counts from its training records are left
    out under any DP mechanism (``tasks.partition.Partition.summary``)."""

    train_size: int
    train_labels: dict[str, int]
    groups: list[Any]  # natural split: the column values this institution holds


class _PartitionKeys(TypedDict):
    scheme: str
    alpha: float | None
    seed: int
    num_clients: int
    test_fraction: float
    column: str | None
    clients: list[PartitionClient]


class PartitionFile(_PartitionKeys, total=False):
    """``partition.json``: the split, each institution's test split, and (without DP) the
    training counts and label skew."""

    num_examples: int
    label_skew: Any
    training_counts: str  # under DP: the note saying they are withheld


@dataclass(frozen=True)
class ModelFacts:
    """What the records state about the backbone and adapter (read off the built model)."""

    device: str
    kind: str
    vector_spec: dict
    vector_spec_hash: str
    trainable_parameters: int


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def environment(
    cfg: RunConfig, model: ModelFacts, base_hash: str, **context: Any
) -> EnvironmentFile:
    """``environment.json``: libraries, platform, the vector spec, the base-weights hash, and
    what this transport adds (``task`` in-process, ``transport`` on Flower)."""
    return {
        "libraries": library_versions(),
        "platform": platform.platform(),
        "device": model.device,
        "backbone": cfg.model.backbone,
        "model_kind": model.kind,
        "vector_spec": model.vector_spec,
        "vector_spec_hash": model.vector_spec_hash,
        "base_weights_sha256": base_hash,
        **context,
    }


def base_weights(before: str, after: str) -> BaseWeights:
    return {"before": before, "after": after, "unchanged": before == after}


def federated_results(
    cfg: RunConfig,
    task: TaskFacts,
    model: ModelFacts,
    history: list[RoundRecord],
    privacy: dict[str, Any],
    secure_aggregation_enabled: bool,
) -> Results:
    """The sections every run's ``results.json`` has; the caller adds its own (baselines,
    base weights, timing, transport)."""
    evaluated = all(r["eval"] is not None for r in history)
    last_eval = history[-1]["eval"] if history else None
    return {
        "name": cfg.name,
        "task": task,
        "adapter": cfg.model.adapter,
        "backbone": cfg.model.backbone,
        "trainable_parameters": model.trainable_parameters,
        "federated": {
            "pooled": last_eval["pooled"] if last_eval else None,
            "clients": last_eval["clients"] if last_eval else None,
            "rounds": len(history),
            "pooled_by_round": [r["eval"]["pooled"] for r in history] if evaluated else None,
        },
        "privacy": privacy,
        "secure_aggregation": {
            "enabled": secure_aggregation_enabled,
            "adversary": cfg.secure_aggregation.adversary,
            "aborted_rounds": [r["round"] for r in history if not r["aggregated"]],
        },
    }


def federated_timing(history: list[RoundRecord]) -> dict[str, float]:
    """The federated rounds' own time, summed over the records."""
    return {
        "federated_wall_s": sum(r["wall_s"] for r in history),
        "federated_cpu_s": sum(r["cpu_s"] for r in history),
    }
