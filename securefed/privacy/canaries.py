"""Canaries for the empirical privacy audit: who carries them, the secret coins, their content.

A run with ``audit.canaries = m`` carries m canary records, spread round-robin over the
institutions the config names (canary i goes to ``institutions[i % len]``). Each is included
with probability 1/2 by a secret coin; an excluded canary never enters training, an included
one is a record of its institution like any other: it is Poisson-sampled at the institution's
rate q (computed from the real records only, so the ledger is unchanged), clipped, noised,
masked and aggregated. Everything derives from one 64-bit seed drawn from the OS and written
only when the run ends (``CanaryPlan.to_json``); until then the coins are as secret as the
records.

- gradient canaries (white box): canary i's per-sample gradient is the fixed unit direction
  u_i (a Gaussian vector over the adapter, normalised; ``canary_direction``) times
  ``GRADIENT_NORM_FACTOR`` x the clip norm, so clipping always scales it to exactly C u_i.
  DP-SGD appends the rows of the sampled included canaries to the per-sample gradients before
  clipping (``securefed.privacy.dp_sgd``, ``canaries=``). Score: the cosine of u_i with the
  step the released adapter took against it (initial minus final global adapter: descent
  moves against the gradient), ``gradient_scores``.
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
GRADIENT_NORM_FACTOR = 2.0  # canary gradient norm / clip norm: always clipped, to exactly C
_COINS, _DIRECTIONS, _INPUTS = 0, 1, 2  # domain separation of the seed's streams


@dataclass(frozen=True)
class CanaryPlan:
    """The canaries of one run: kind, count, carriers and the secret seed of everything."""

    kind: CanaryKind
    count: int
    institutions: tuple[int, ...]
    seed: int

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

    @property
    def included(self) -> np.ndarray:
        """[m] bool: the secret coins (True = the canary took part in training)."""
        return np.random.default_rng([self.seed, _COINS]).random(self.count) < 0.5

    def carrier(self, index: int) -> int:
        """The institution that carries canary ``index``."""
        return self.institutions[index % len(self.institutions)]

    def included_at(self, institution: int) -> np.ndarray:
        """Indices of the included canaries that ``institution`` trains on (ascending)."""
        carried = np.arange(self.count) % len(self.institutions)
        mine = carried == self.institutions.index(institution)
        return np.flatnonzero(mine & self.included)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "count": self.count,
            "institutions": list(self.institutions),
            "seed": str(self.seed),  # JSON readers may hold integers as doubles
        }

    @classmethod
    def from_json(cls, data: dict) -> CanaryPlan:
        return cls(data["kind"], int(data["count"]), tuple(data["institutions"]), int(data["seed"]))


def plan_canaries(count: int, kind: CanaryKind, institutions: tuple[int, ...]) -> CanaryPlan:
    """A plan whose seed (hence coins, directions and inputs) comes from the OS."""
    return CanaryPlan(kind, count, tuple(institutions), int.from_bytes(os.urandom(8), "little"))


def canary_direction(seed: int, index: int, dimension: int) -> np.ndarray:
    """[d] float32 unit vector of gradient canary ``index`` (its own stream of ``seed``).

    Drawn afresh when needed (a thousand canaries over a 75k-parameter adapter would hold
    300 MB); float32 halves the cost of the draw, which DP-SGD pays for every sampled canary.
    """
    rng = np.random.default_rng([seed, _DIRECTIONS, index])
    v = rng.standard_normal(dimension, dtype=np.float32)
    return v / np.float32(math.sqrt(_dot(v, v)))


def gradient_scores(plan: CanaryPlan, initial: np.ndarray, final: np.ndarray) -> np.ndarray:
    """[m] cosines of each canary direction with ``initial - final``, the released step
    (gradient descent moves against a canary's gradient: an included one scores near its
    share of the step, an excluded one about N(0, 1/d))."""
    if plan.kind != "gradient":
        raise ValueError(f"gradient scores need gradient canaries, this plan has {plan.kind!r}")
    if initial.shape != final.shape or initial.ndim != 1:
        raise ValueError(
            f"initial and final adapters must be flat vectors of one size, got shapes "
            f"{initial.shape} and {final.shape}"
        )
    step = initial.astype(np.float64) - final.astype(np.float64)
    norm = math.sqrt(_dot(step, step))
    if norm == 0:
        return np.zeros(plan.count)
    unit = step / norm
    return np.array(
        [_dot(canary_direction(plan.seed, i, step.size), unit) for i in range(plan.count)]
    )


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b in float64 by einsum's own loop: BLAS dot spins up its thread pool on every call,
    which cost 30 ms a call (against 15 us) on a loaded machine here."""
    return float(np.einsum("i,i->", a, b, dtype=np.float64))


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
