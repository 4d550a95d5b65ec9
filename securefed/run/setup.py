"""Everything a run builds before its first round: data, partition, model, encoded splits.

Shared by the in-process transport, the baselines and the Flower apps, so that all of them
train the same backbone and adapter on the same client shards.
"""

from __future__ import annotations

import dataclasses
import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from securefed.config import RunConfig
from securefed.errors import ConfigError
from securefed.model.adapters import (
    AdapterModel,
    build_adapter_model,
    get_vector,
    head_only,
    set_vector,
)
from securefed.model.evaluation import evaluate_splits
from securefed.model.prefix_cache import scorer_and_rows
from securefed.model.training import encode_examples, steps_for, train_local
from securefed.privacy.canaries import CanaryPlan
from securefed.privacy.canary_trace import CanaryTrace, CarriedCanaries
from securefed.privacy.plan import DPPlan, LocalStats
from securefed.run.progress import Progress
from securefed.run.records import EvalMetrics, ModelFacts, TaskFacts
from securefed.seeding import derived_seed
from securefed.tasks import Task, get_task
from securefed.tasks.base import column_values
from securefed.tasks.partition import Partition, partition

LABEL_SKEW_OVER_LETTERS = (
    "partition.scheme=dirichlet skews the answer letters (A-D) of {task} across institutions: "
    "letters are arbitrary, so this is no meaningful non-IID split, and a model that reads "
    "the lettered options may learn a favourite letter; use quantity (size skew), iid, or "
    "natural with partition.column set to a column the rows carry (medmcqa: subject_name)"
)


@dataclass
class RunSetup:
    cfg: RunConfig
    task: Task
    partition: Partition
    bundle: AdapterModel
    scorer: AdapterModel  # what trains and predicts: ``bundle``, or its top-N suffix view
    data: TensorDataset  # rows as ``scorer`` reads them (tokens, or cached prefix activations)
    client_train: list[Subset]
    client_test: list[Subset]
    pooled_test: Subset
    pooled_train: Subset
    initial_vector: np.ndarray  # (d,) float32: the adapter every run starts from
    canaries: CanaryPlan | None = None  # the empirical audit's canaries (``simulate`` sets it)
    canary_rows: TensorDataset | None = None  # input canaries only: every one, as ``data``'s rows
    canary_trace: CanaryTrace | None = None  # gradient canaries only: their carriers' steps

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
        *,
        steps: int,
        seed_parts: tuple[int | str, ...],
        dp: DPPlan | None,
        progress: Progress,
        label: str,
        head_only_round: bool = False,
        canaries: CarriedCanaries | None = None,
        input_canaries: Subset | None = None,
        proximal_mu: float = 0.0,
        lr_span: tuple[float, float] | None = None,
    ) -> LocalStats:
        """Load ``start`` into the adapter and train it in place for ``steps`` steps on
        ``data``, batches drawn from a generator seeded by ``seed_parts`` (see
        ``securefed.seeding``); ``dp`` is a DP plan or None; gradient ``canaries`` (plan,
        institution, trace) join its steps, ``input_canaries`` (rows) its records; ``proximal_mu``:
        FedProx's term towards ``start``; ``lr_span``: the schedule's slice (``lr_span``). The
        one training call of the federation's clients and of both baselines."""
        t = self.cfg.training
        set_vector(self.scorer.model, start, self.scorer.spec)
        generator = torch.Generator().manual_seed(derived_seed(self.cfg.seed, *seed_parts))
        probe = head_only(self.bundle.model) if head_only_round else nullcontext()
        with probe, progress.task(label, total=steps) as advance:
            knobs = {"batch_size": t.batch_size, "lr": t.lr, "weight_decay": t.weight_decay}
            return train_local(
                self.scorer,
                data,
                steps=steps,
                generator=generator,
                dp=dp,
                on_step=advance,
                canaries=canaries,
                canary_clip_norm=self.cfg.privacy.dp.max_grad_norm,
                input_canaries=input_canaries,
                proximal_mu=proximal_mu,
                lr_span=lr_span,
                **knobs,
            )

    def with_lr(self, lr: float) -> RunSetup:
        """This setup training at learning rate ``lr`` (the same model, data and splits)."""
        training = self.cfg.training.model_copy(update={"lr": lr})
        return dataclasses.replace(self, cfg=self.cfg.model_copy(update={"training": training}))

    def expected_rounds_per_client(self) -> float:
        t = self.cfg.training
        return t.rounds * t.clients_per_round / self.num_clients

    def evaluate(self, vector: np.ndarray) -> EvalMetrics:
        """Metrics of ``vector`` on every client's test split and on the pooled test set."""
        set_vector(self.bundle.model, vector, self.bundle.spec)
        return self.evaluate_current()

    def evaluate_current(self) -> EvalMetrics:
        """Metrics of the adapter the model holds now (the baselines train it in place)."""
        return evaluate_splits(
            self.scorer,
            self.task,
            self.pooled_test,
            [len(t) for t in self.client_test],
            self.cfg.training.eval_batch_size,
        )


def lr_span(cfg: RunConfig, round_index: int | None) -> tuple[float, float] | None:
    """The fractions of the learning rate at the beginning and end of one training call
    under ``training.lr_schedule``: linear decays over the whole run, so federated round r
    of R spans (1 - r/R, 1 - (r+1)/R) and a baseline (``round_index`` None) spans (1, 0);
    None under constant."""
    if cfg.training.lr_schedule == "constant":
        return None
    if round_index is None:
        return (1.0, 0.0)
    rounds = cfg.training.rounds
    return (1.0 - round_index / rounds, 1.0 - (round_index + 1) / rounds)


def client_update(
    setup: RunSetup,
    client: int,
    global_vector: np.ndarray,
    round_index: int,
    dp_plan: DPPlan | None,
    progress: Progress,
) -> tuple[np.ndarray, LocalStats]:
    """What one client does in one round, in-process or on a Flower node: train from the
    global adapter on its own shard; return (delta, stats).

    A canary carrier trains with its included canaries. Input canaries are records of its
    shard in every round; gradient canaries skip head-only rounds: their directions span the
    whole adapter, of which only the head trains then."""
    head_only_round = round_index < setup.cfg.training.linear_probe_rounds
    plan, carried, rows = setup.canaries, None, None
    if plan is not None and client in plan.institutions:
        if plan.kind == "input":
            included = plan.included_at(client).tolist()
            rows = Subset(setup.canary_rows, included) if included else None
        elif not head_only_round:
            carried = CarriedCanaries(plan, client, setup.canary_trace)
    stats = setup.train_from(
        global_vector,
        setup.client_train[client],
        steps=setup.local_steps(client),
        seed_parts=("data", round_index, client),
        dp=dp_plan,
        progress=progress,
        label=f"client {client}",
        head_only_round=head_only_round,
        canaries=carried,
        input_canaries=rows,
        proximal_mu=setup.cfg.training.proximal_mu,
        lr_span=lr_span(setup.cfg, round_index),
    )
    delta = get_vector(setup.bundle.model) - global_vector  # (d,) float32
    return delta, stats


def model_facts(bundle: AdapterModel) -> ModelFacts:
    """What the run's records state about the model."""
    return ModelFacts(
        device=str(next(bundle.model.parameters()).device),
        kind=bundle.kind,
        vector_spec=bundle.spec.to_json(),
        vector_spec_hash=bundle.spec.hash,
        trainable_parameters=bundle.spec.size,
    )


def task_facts(task: Task) -> TaskFacts:
    return {"name": task.name, "synthetic": task.synthetic, "primary_metric": task.primary_metric}


def resolve_device(requested: str) -> str:
    """The torch device for ``training.device``; cuda on a machine without it is a config
    error, found before anything is built."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "training.device", requested, "auto or cpu: torch finds no CUDA device on this machine"
        )
    return requested


def load_and_partition(cfg: RunConfig) -> tuple[Task, list, Partition]:
    """The task's examples and their split into institutions (train/test per institution)."""
    task = get_task(cfg.task.name)
    if task.kind == "multiple_choice" and cfg.partition.scheme == "dirichlet":
        warnings.warn(LABEL_SKEW_OVER_LETTERS.format(task=task.name), UserWarning, stacklevel=3)
    examples = task.load(cfg.task, cfg.seed)
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    groups = None
    if cfg.partition.scheme == "natural":
        groups = column_values(examples, cfg.partition.column)
    return task, examples, partition(labels, cfg.partition, cfg.seed, groups=groups)


def adapter_model(cfg: RunConfig, task: Task) -> AdapterModel:
    """The backbone with the configured adapter, for this task's labels and device."""
    return build_adapter_model(
        cfg.model,
        num_labels=task.num_choices,
        seed=cfg.seed,
        device=resolve_device(cfg.training.device),
        per_option=task.kind == "multiple_choice",
    )


def plan_sizes(cfg: RunConfig) -> tuple[list[int], list[int], int]:
    """What the DP plan needs, without encoding a record or running the backbone: each
    institution's training-record count and local steps per round, and the number of
    trainable parameters d (the adapter is built, the examples are not passed through it)."""
    task, _, shards = load_and_partition(cfg)
    bundle = adapter_model(cfg, task)
    t = cfg.training
    sizes = [len(s.train) for s in shards.clients]
    steps = [steps_for(n, t.batch_size, t.local_epochs, t.local_steps) for n in sizes]
    return sizes, steps, bundle.spec.size


def build_setup(cfg: RunConfig) -> RunSetup:
    """Load the task, partition it, build the adapter model and tokenize every split once."""
    task, examples, shards = load_and_partition(cfg)
    bundle = adapter_model(cfg, task)
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
