"""Canaries for the empirical privacy audit: who carries them, the secret coins, their content.

A run with ``audit.canaries = m`` carries m canary records, spread round-robin over the
institutions the config names (canary i goes to ``institutions[i % len]``). Each is included
with probability 1/2 by a secret coin; an excluded canary never enters training, an included
one is a record of its institution like any other: it is Poisson-sampled at the
institution's rate q (computed from the real records only, so the ledger is unchanged),
clipped, noised, masked and aggregated (without DP: seen once an epoch, as the shuffled
records are). Everything derives from one 64-bit seed drawn from the OS and written only
when the run ends (``CanaryPlan.to_json``); until then the coins are as secret as the
records.

- gradient canaries (white box, Dirac): canary i's per-sample gradient is s_i e_{k_i}, one
  coordinate k_i of the adapter with a sign s_i (``canary_coordinates``; distinct coordinates,
  drawn from the plan's ``blocks``: the adapter matrices the audit puts canaries in), times
  ``GRADIENT_NORM_FACTOR`` x the clip norm, so clipping always scales it to exactly C. DP-SGD
  appends the rows of the sampled included canaries to the per-sample gradients before
  clipping (``securefed.privacy.dp_sgd``, ``canaries=``). One coordinate each: no canary
  moves another's score (dense random directions overlap by 1/sqrt(d) each, a thousand of
  them by far more than one canary's step). Score: ``canary_scores.gradient_scores``, from
  every released round.
- input canaries (black box): canary i is a record of uniformly random tokens and a uniformly
  random label (``input_canary_records``), encoded and cached like the task's records
  (``securefed.model.input_canaries``); an included one joins its carrier's shard as a record
  (``securefed.model.carried_rows``). Score: minus its loss under the released (final global)
  model.

This module is numpy-only, so the audit can recompute gradient scores without torch; the
injection itself (torch) lives in ``dp_sgd``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

CanaryKind = Literal["gradient", "input"]
CANARY_KINDS: tuple[str, ...] = ("gradient", "input")
# Canary gradient norm / clip norm. Under DP every canary is clipped to exactly C, whatever
# this is; without DP nothing clips it, and Adam divides each coordinate's step by its own
# gradient's size: only a canary far larger than the records' gradient at its coordinate
# owns that coordinate's steps (a designed canary: the most a record can do without DP).
GRADIENT_NORM_FACTOR = 1000.0
_COINS, _DIRECTIONS, _INPUTS = 0, 1, 2  # domain separation of the seed's streams
Block = tuple[int, int, int]  # (offset in the adapter vector, rows, columns) of one matrix


@dataclass(frozen=True)
class CanaryPlan:
    """The canaries of one run: kind, count, carriers, the secret seed of everything and, for
    gradient canaries, the adapter matrices (``blocks``) their coordinates are drawn from."""

    kind: CanaryKind
    count: int
    institutions: tuple[int, ...]
    seed: int
    blocks: tuple[Block, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in CANARY_KINDS:
            raise ValueError(f"canary kind {self.kind!r} is not one of {CANARY_KINDS}")
        if self.count < 1 or not self.institutions:
            raise ValueError(
                f"a canary plan needs count >= 1 and an institution, got {self.count} and "
                f"{list(self.institutions)}"
            )
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"canary seed must be a 64-bit unsigned integer, got {self.seed}")
        room = sum(rows * cols for _, rows, cols in self.blocks)
        if self.kind == "gradient" and room < self.count:
            raise ValueError(
                f"{self.count} gradient canaries need as many distinct coordinates; their "
                f"blocks {list(self.blocks)} hold {room}"
            )

    @property
    def included(self) -> np.ndarray:
        """[m] bool: the secret coins (True = the canary took part in training)."""
        return np.random.default_rng([self.seed, _COINS]).random(self.count) < 0.5

    def carrier(self, index: int) -> int:
        """The institution that carries canary ``index``."""
        return self.institutions[index % len(self.institutions)]

    def carried_by(self, institution: int) -> np.ndarray:
        """Indices of every canary ``institution`` carries, included or not (ascending)."""
        carried = np.arange(self.count) % len(self.institutions)
        return np.flatnonzero(carried == self.institutions.index(institution))

    def included_at(self, institution: int) -> np.ndarray:
        """Indices of the included canaries that ``institution`` trains on (ascending)."""
        carried = self.carried_by(institution)
        return carried[self.included[carried]]

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "count": self.count,
            "institutions": list(self.institutions),
            "seed": str(self.seed),  # JSON readers may hold integers as doubles
            "blocks": [list(block) for block in self.blocks],
        }

    @classmethod
    def from_json(cls, data: dict) -> CanaryPlan:
        blocks = tuple(tuple(int(v) for v in block) for block in data.get("blocks", []))
        return cls(
            data["kind"],
            int(data["count"]),
            tuple(data["institutions"]),
            int(data["seed"]),
            blocks,  # type: ignore[arg-type]
        )


def plan_canaries(
    count: int, kind: CanaryKind, institutions: tuple[int, ...], blocks: tuple[Block, ...] = ()
) -> CanaryPlan:
    """A plan whose seed (hence coins, coordinates and inputs) comes from the OS."""
    seed = int.from_bytes(os.urandom(8), "little")
    return CanaryPlan(kind, count, tuple(institutions), seed, tuple(blocks))


def canary_blocks(
    names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], parameters: list[str] | None
) -> tuple[Block, ...]:
    """The adapter matrices gradient canaries live in: every 2-D tensor of the adapter vector
    (``names`` and ``shapes`` in vector order) whose name contains one of ``parameters``
    (None: every 2-D tensor but the head's, ``modules_to_save``, which every record moves)."""
    blocks, offset = [], 0
    for name, shape in zip(names, shapes, strict=True):
        size = math.prod(shape)
        wanted = (
            "modules_to_save" not in name
            if parameters is None
            else any(part in name for part in parameters)
        )
        if len(shape) == 2 and wanted:
            blocks.append((offset, int(shape[0]), int(shape[1])))
        offset += size
    return tuple(blocks)


def canary_coordinates(plan: CanaryPlan) -> tuple[np.ndarray, np.ndarray]:
    """([m] int64 distinct adapter coordinates, [m] float64 signs of +-1) of the gradient
    canaries: drawn uniformly without replacement from the plan's blocks (its own stream of
    the seed)."""
    if plan.kind != "gradient":
        raise ValueError(f"coordinates belong to gradient canaries, this plan has {plan.kind!r}")
    pool = np.concatenate([np.arange(o, o + r * c, dtype=np.int64) for o, r, c in plan.blocks])
    rng = np.random.default_rng([plan.seed, _DIRECTIONS])
    coordinates = rng.choice(pool, size=plan.count, replace=False)
    signs = np.where(rng.random(plan.count) < 0.5, -1.0, 1.0)
    return coordinates, signs


def canary_claim(plan: CanaryPlan, privacy_report: dict) -> tuple[float, float]:
    """(epsilon, delta) every canary is protected by, from a run's privacy report (per
    institution ``epsilon`` and ``delta``): the largest final epsilon among the carriers
    (infinity where DP was off), at the largest of their deltas."""
    clients = privacy_report["clients"]
    epsilon = max(float(clients[str(c)]["epsilon"]) for c in plan.institutions)
    delta = max(float(clients[str(c)]["delta"]) for c in plan.institutions)
    return epsilon, delta


def canary_record(
    plan: CanaryPlan, scores: np.ndarray, *, delta: float, claimed_epsilon: float
) -> dict:
    """What a run writes to ``canaries.json`` when it ends: the plan with its seed (the coins
    and contents derive from it, and stop being secret once the run is over), one score per
    canary under the released model, and the (epsilon, delta) claim they are audited against."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (plan.count,):
        raise ValueError(f"need one score per canary ({plan.count}), got shape {scores.shape}")
    return {
        "plan": plan.to_json(),
        "scores": scores.tolist(),
        "delta": delta,
        "claimed_epsilon": claimed_epsilon if math.isfinite(claimed_epsilon) else "inf",
    }


def input_canary_records(
    plan: CanaryPlan, *, vocab_size: int, length: int, num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """All m input canaries: token ids [m, length] int64 and labels [m] int64, uniform.

    Token 0 is left out (padding in most vocabularies); the caller turns rows into records of
    its dataset (attention mask of ones, the task's answer ids) and trains on the included
    ones of each institution (``plan.included_at``).
    """
    if plan.kind != "input":
        raise ValueError(f"input canary records need input canaries, this plan has {plan.kind!r}")
    if vocab_size < 2 or length < 1 or num_labels < 2:
        raise ValueError(
            f"need vocab_size >= 2, length >= 1, num_labels >= 2; got {vocab_size}, {length}, "
            f"{num_labels}"
        )
    rng = np.random.default_rng([plan.seed, _INPUTS])
    tokens = rng.integers(1, vocab_size, size=(plan.count, length), dtype=np.int64)
    labels = rng.integers(0, num_labels, size=plan.count, dtype=np.int64)
    return tokens, labels


def input_scores(losses: np.ndarray) -> np.ndarray:
    """[m] scores of input canaries from their losses under the released model (lower loss,
    more likely trained on: the score is minus the loss)."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or not np.all(np.isfinite(losses)):
        raise ValueError("input canary losses must be a finite 1-D array, one per canary")
    return -losses
