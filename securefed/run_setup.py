"""Everything a run builds before its first round: data, partition, model, encoded splits.

Shared by the federated loop, the baselines and the Flower apps, so that all of them train the
same backbone and adapter on the same client shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from securefed.adapters import AdapterModel, build_adapter_model, get_vector, set_vector
from securefed.config import RunConfig
from securefed.partition import Partition, partition
from securefed.prefix_cache import scorer_and_rows
from securefed.progress import Progress
from securefed.seeding import derived_seed
from securefed.tasks import get_task
from securefed.tasks.base import column_values
from securefed.training import LocalStats, encode_examples, steps_for, train_local


@dataclass
class RunSetup:
    cfg: RunConfig
    task: object
    partition: Partition
    bundle: AdapterModel
    scorer: AdapterModel  # what trains and predicts: ``bundle``, or its top-N suffix view
    data: TensorDataset  # rows as ``scorer`` reads them (tokens, or cached prefix activations)
    client_train: list[Subset]
    client_test: list[Subset]
    pooled_test: Subset
    pooled_train: Subset
    initial_vector: np.ndarray  # (d,) float32: the adapter every run starts from

    @property
    def num_clients(self) -> int:
        return len(self.client_train)

    def local_steps(self, client: int) -> int:
        t = self.cfg.training
        return steps_for(
            len(self.client_train[client]), t.batch_size, t.local_epochs, t.local_steps
        )

    def train_from(
        self,
        start: np.ndarray,
        data: Subset,
        steps: int,
        seed_parts: tuple[int | str, ...],
        dp,
        progress: Progress,
        label: str,
    ) -> LocalStats:
        """Load ``start`` into the adapter and train it in place for ``steps`` steps on
        ``data``, batches drawn from a generator seeded by ``seed_parts`` (see
        ``securefed.seeding``); ``dp`` is a DP plan or None. The one training call of the
        federation's clients and of both baselines."""
        t = self.cfg.training
        set_vector(self.scorer.model, start, self.scorer.spec)
        generator = torch.Generator().manual_seed(derived_seed(self.cfg.seed, *seed_parts))
        with progress.task(label, total=steps) as advance:
            return train_local(
                self.scorer,
                data,
                steps=steps,
                batch_size=t.batch_size,
                lr=t.lr,
                weight_decay=t.weight_decay,
                generator=generator,
                dp=dp,
                on_step=advance,
            )

    def expected_rounds_per_client(self) -> float:
        t = self.cfg.training
        return t.rounds * t.clients_per_round / self.num_clients


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def build_setup(cfg: RunConfig) -> RunSetup:
    """Load the task, partition it, build the adapter model and tokenize every split once."""
    task = get_task(cfg.task.name)
    examples = task.load(cfg.task, cfg.seed)
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    groups = None
    if cfg.partition.scheme == "natural":
        groups = column_values(examples, cfg.partition.column)
    shards = partition(labels, cfg.partition, cfg.seed, groups=groups)
    bundle = build_adapter_model(
        cfg.model,
        num_labels=task.num_choices,
        seed=cfg.seed,
        device=resolve_device(cfg.training.device),
    )
    data = encode_examples(examples, task, bundle, cfg.model.max_length)
    scorer, data = scorer_and_rows(
        bundle, data, cfg.model.adapter_layers, cfg.training.eval_batch_size
    )
    client_train = [Subset(data, s.train.tolist()) for s in shards.clients]
    client_test = [Subset(data, s.test.tolist()) for s in shards.clients]
    pooled_test = Subset(data, np.concatenate([s.test for s in shards.clients]).tolist())
    pooled_train = Subset(data, np.concatenate([s.train for s in shards.clients]).tolist())
    return RunSetup(
        cfg=cfg,
        task=task,
        partition=shards,
        bundle=bundle,
        scorer=scorer,
        data=data,
        client_train=client_train,
        client_test=client_test,
        pooled_test=pooled_test,
        pooled_train=pooled_train,
        initial_vector=get_vector(bundle.model),
    )
