"""Give each institution a non-IID shard of the examples, and each shard its own test split.

Schemes (``partition.scheme``):

- ``iid``: a seeded shuffle cut into near-equal parts.
- ``dirichlet``: label skew. For every label, the share each client gets is drawn from
  Dirichlet(alpha, ..., alpha) (Hsu et al. 2019); small alpha gives each client few labels.
- ``quantity``: size skew. Client sizes are drawn from Dirichlet(alpha, ..., alpha), labels stay
  mixed.
- ``natural``: by the value of a column (``partition.column``, e.g. ``subject_name`` or
  ``institution``): one client per value, or, with more values than clients, values packed
  largest first onto the least-loaded client.

Every example lands in exactly one client. Every client then gets at least ``min_examples``
training examples and at least one test example: ``dirichlet`` and ``quantity`` move examples
deterministically from the largest clients to the short ones (preferring labels the short
client already holds, so the skew survives); ``iid`` is balanced already; ``natural`` never
moves an example between institutions and raises ``ConfigError`` instead. Each client's test
split (``test_fraction``) is stratified by label. Everything is a function of ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from securefed.config import PartitionConfig
from securefed.errors import ConfigError, DataError

WITHHELD_UNDER_DP = (
    "withheld: a DP mechanism is on, and training sizes and label histograms are exact counts "
    "of the records, outside the DP guarantee"
)
_ASSIGN_STREAM, _SPLIT_STREAM = 1, 2  # independent random streams drawn from one seed


@dataclass(frozen=True)
class ClientShard:
    """One client's examples: indices into the task's example list (int64, sorted)."""

    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Partition:
    """The clients' shards and how they were made."""

    clients: list[ClientShard]
    labels: np.ndarray  # (n,) label of every example, for the histograms
    scheme: str
    alpha: float | None  # dirichlet / quantity only
    seed: int
    test_fraction: float
    column: str | None = None  # natural only
    client_groups: tuple[tuple[str, ...], ...] | None = None  # natural: column values per client

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def pooled_train(self) -> np.ndarray:
        """Every client's training indices together (the centralized baseline's data)."""
        return np.sort(np.concatenate([c.train for c in self.clients]))

    def pooled_test(self) -> np.ndarray:
        """Every client's test indices together (the pooled test set)."""
        return np.sort(np.concatenate([c.test for c in self.clients]))

    def summary(
        self, label_names: Sequence[str] | None = None, *, withhold_training_counts: bool = False
    ) -> dict[str, Any]:
        """JSON-able record: scheme, alpha, seed, and per client its sizes and label histograms.

        ``withhold_training_counts`` (any DP mechanism on): leave out everything computed from
        the training records (each client's training size and label histogram, the total
        example count, the label skew); they are exact counts, outside the DP guarantee.
        Test-split sizes and histograms stay (threat_model.md names them).
        """
        num_labels = max(int(self.labels.max()) + 1, len(label_names or ()))
        names = list(label_names or ()) or [str(i) for i in range(num_labels)]

        def histogram(idx: np.ndarray) -> dict[str, int]:
            counts = np.bincount(self.labels[idx], minlength=num_labels)
            return {names[k]: int(counts[k]) for k in range(num_labels)}

        clients = []
        for i, shard in enumerate(self.clients):
            entry: dict[str, Any] = {"client": i}
            if not withhold_training_counts:
                entry["train_size"] = int(shard.train.size)
            entry["test_size"] = int(shard.test.size)
            if not withhold_training_counts:
                entry["train_labels"] = histogram(shard.train)
            entry["test_labels"] = histogram(shard.test)
            if self.client_groups is not None:
                entry["groups"] = list(self.client_groups[i])
            clients.append(entry)
        counts: dict[str, Any] = (
            {"training_counts": WITHHELD_UNDER_DP}
            if withhold_training_counts
            else {"num_examples": int(self.labels.size), "label_skew": label_skew(self)}
        )
        return {
            "scheme": self.scheme,
            "alpha": self.alpha,
            "seed": self.seed,
            "num_clients": self.num_clients,
            "test_fraction": self.test_fraction,
            "column": self.column,
            **counts,
            "clients": clients,
        }


def partition(
    labels: np.ndarray,
    cfg: PartitionConfig,
    seed: int,
    groups: Sequence[str] | None = None,
) -> Partition:
    """Split examples with these labels among ``cfg.num_clients`` clients (see module doc).

    ``groups`` holds every example's value of ``cfg.column``; only ``natural`` uses it.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"partition needs a non-empty 1-D label array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError("partition needs labels as non-negative integers")
    labels = labels.astype(np.int64)
    k, n = cfg.num_clients, labels.size
    need = _examples_needed(cfg.min_examples, cfg.test_fraction)
    if n < k * need:
        raise ConfigError(
            "partition.num_clients",
            k,
            f"at most {n // need} for {n} examples: each client needs {need} "
            f"(partition.min_examples={cfg.min_examples} to train plus its test split)",
        )
    rng = np.random.default_rng([seed, _ASSIGN_STREAM])
    client_groups = None
    if cfg.scheme == "iid":
        owner = _iid(n, k, rng)
    elif cfg.scheme == "dirichlet":
        owner = _rebalance(_dirichlet(labels, k, cfg.alpha, rng), labels, k, need, rng)
    elif cfg.scheme == "quantity":
        owner = _rebalance(_quantity(n, k, cfg.alpha, rng), labels, k, need, rng)
    else:
        owner, client_groups = _natural(groups, cfg, need)
    split_rng = np.random.default_rng([seed, _SPLIT_STREAM])
    clients = [
        _train_test(np.flatnonzero(owner == c), labels, cfg.test_fraction, split_rng)
        for c in range(k)
    ]
    return Partition(
        clients=clients,
        labels=labels,
        scheme=cfg.scheme,
        alpha=cfg.alpha if cfg.scheme in ("dirichlet", "quantity") else None,
        seed=seed,
        test_fraction=cfg.test_fraction,
        column=cfg.column if cfg.scheme == "natural" else None,
        client_groups=client_groups,
    )


def _test_size(size: int, test_fraction: float) -> int:
    return max(1, round(test_fraction * size))


def _examples_needed(min_train: int, test_fraction: float) -> int:
    """Smallest client size whose train part, after its test split, holds ``min_train``."""
    size = min_train + 1
    while size - _test_size(size, test_fraction) < min_train:
        size += 1
    return size


def _iid(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    owner = np.empty(n, dtype=np.int64)
    for c, idx in enumerate(np.array_split(rng.permutation(n), k)):
        owner[idx] = c
    return owner


def _dirichlet(labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    owner = np.empty(labels.size, dtype=np.int64)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(k, alpha))  # (k,)
        cuts = np.round(np.cumsum(shares)[:-1] * idx.size).astype(np.int64)
        for c, part in enumerate(np.split(idx, cuts)):
            owner[part] = c
    return owner


def _quantity(n: int, k: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    shares = rng.dirichlet(np.full(k, alpha))  # (k,)
    cuts = np.round(np.cumsum(shares)[:-1] * n).astype(np.int64)
    owner = np.empty(n, dtype=np.int64)
    for c, part in enumerate(np.split(rng.permutation(n), cuts)):
        owner[part] = c
    return owner


def _rebalance(
    owner: np.ndarray, labels: np.ndarray, k: int, need: int, rng: np.random.Generator
) -> np.ndarray:
    """Move examples from the largest clients until every client holds ``need``.

    The caller checked ``n >= k * need``, so while a client is short the largest one has more
    than ``need`` and can give. A short client takes, from the largest one, an example of the
    label it already holds most of (else the giver's most common label): skew is kept.
    """
    owner = owner.copy()
    order = rng.permutation(labels.size)  # which example of a kind moves first
    num_labels = int(labels.max()) + 1
    counts = np.zeros((k, num_labels), dtype=np.int64)  # (clients, labels)
    np.add.at(counts, (owner, labels), 1)
    for short in range(k):
        while counts[short].sum() < need:
            giver = int(np.argmax(counts.sum(axis=1)))
            wanted = counts[short] * (counts[giver] > 0)
            label = int(np.argmax(wanted)) if wanted.any() else int(np.argmax(counts[giver]))
            moving = order[(owner[order] == giver) & (labels[order] == label)][0]
            owner[moving] = short
            counts[giver, label] -= 1
            counts[short, label] += 1
    return owner


def _natural(
    groups: Sequence[str] | None, cfg: PartitionConfig, need: int
) -> tuple[np.ndarray, tuple[tuple[str, ...], ...]]:
    if groups is None or cfg.column is None:
        raise ConfigError("partition.column", cfg.column, "a column of the task's examples")
    values = np.asarray([str(g) for g in groups])
    distinct, inverse, sizes = np.unique(values, return_inverse=True, return_counts=True)
    k = cfg.num_clients
    if distinct.size < k:
        raise ConfigError(
            "partition.num_clients",
            k,
            f"at most {distinct.size}, the number of distinct values of "
            f"partition.column={cfg.column!r}",
        )
    # Largest group first onto the least-loaded client (ties: lowest index): deterministic.
    client_of_group = np.empty(distinct.size, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in sorted(range(distinct.size), key=lambda g: (-sizes[g], distinct[g])):
        c = int(np.argmin(load))
        client_of_group[g] = c
        load[c] += sizes[g]
    if load.min() < need:
        c = int(np.argmin(load))
        members = ", ".join(distinct[client_of_group == c])
        raise ConfigError(
            "partition.min_examples",
            cfg.min_examples,
            f"a value the smallest natural client ({cfg.column}={members}: {load[c]} examples) "
            f"can meet; it needs {need} examples with its test split",
        )
    client_groups = tuple(tuple(distinct[client_of_group == c]) for c in range(k))
    return client_of_group[inverse], client_groups


def _train_test(
    idx: np.ndarray, labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> ClientShard:
    """Stratified split: each label gives its share of the test set (largest remainders)."""
    n_test = _test_size(idx.size, test_fraction)
    kinds, counts = np.unique(labels[idx], return_counts=True)
    exact = counts * n_test / idx.size  # (labels,) ideal test count per label
    quota = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quota), kind="stable")
    quota[by_remainder[: n_test - int(quota.sum())]] += 1
    test = [
        rng.permutation(idx[labels[idx] == kind])[:q] for kind, q in zip(kinds, quota, strict=True)
    ]  # each label's test part
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(idx, test_idx, assume_unique=True)
    return ClientShard(train=train_idx.astype(np.int64), test=test_idx.astype(np.int64))


def label_skew(part: Partition) -> float:
    """Size-weighted mean total-variation distance between each client's label mix and the
    overall one: 0 for identical mixes, towards 1 when clients hold disjoint labels."""
    num_labels = int(part.labels.max()) + 1
    overall = np.bincount(part.labels, minlength=num_labels) / part.labels.size
    weighted, total = 0.0, 0
    for shard in part.clients:
        idx = np.concatenate([shard.train, shard.test])
        mix = np.bincount(part.labels[idx], minlength=num_labels) / idx.size
        weighted += idx.size * 0.5 * float(np.abs(mix - overall).sum())
        total += idx.size
    return weighted / total


def majority_class(partition: dict) -> dict:
    """The accuracy of always answering the most common label of each test split, from the
    partition summary's label counts: the floor an adapter must clear to have learned at all
    (federated, isolated and, under DP, even centralized training can fall to it)."""
    clients = partition.get("clients", [])
    pooled: dict[str, int] = {}
    per_client = {}
    for c in clients:
        counts = c.get("test_labels") or {}
        for label, n in counts.items():
            pooled[label] = pooled.get(label, 0) + n
        total = sum(counts.values())
        per_client[str(c["client"])] = max(counts.values()) / total if total else None
    total = sum(pooled.values())
    return {
        "pooled": max(pooled.values()) / total if total else None,
        "label": max(pooled, key=pooled.get) if total else None,
        "clients": per_client,
    }
