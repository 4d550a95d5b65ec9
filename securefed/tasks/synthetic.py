"""Shared machinery of the SYNTHETIC tasks: seeded randomness, institutions, knobs.

Every synthetic example is generated from ``random.Random`` seeded with a string (hashed with
SHA-512 by Python, so independent of ``PYTHONHASHSEED``): the same (task, seed, knobs) gives the
same examples on every machine. Each institution has its own vocabulary; ``institution_vocab``
is the rate at which a word slot takes the institution's word instead of the common one.
Everything generated here carries ``columns["source"] = "synthetic"``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from securefed.config import SyntheticConfig

SOURCE = "synthetic"
T = TypeVar("T")

_INSTITUTION_FIRST = (
    "Nordhavn", "Alder", "Brightwater", "Kestrel", "Ostend", "Marlow", "Vireo", "Hallam",
)  # fmt: skip
FINANCE_KINDS = ("Bank", "Capital", "Securities", "Partners", "Markets", "Research",
                 "Investments", "Asset Management")  # fmt: skip
CLINIC_KINDS = ("Clinic", "Hospital", "Medical Center", "Health", "Infirmary", "Care",
                "University Hospital", "Institute")  # fmt: skip


def rng_for(task_name: str, seed: int, stream: str) -> random.Random:
    """An independent, reproducible random stream per (task, seed, purpose)."""
    return random.Random(f"securefed:{task_name}:{seed}:{stream}")


def institution_names(count: int, rng: random.Random, kinds: Sequence[str]) -> list[str]:
    """``count`` distinct institution names (at most 64), e.g. "Kestrel Securities"."""
    pairs = [f"{a} {b}" for a in _INSTITUTION_FIRST for b in kinds]
    return rng.sample(pairs, count)


def label_noise_rate(difficulty: float) -> float:
    """Share of flipped labels: none up to difficulty 0.5, rising to 20% at 1."""
    return 0.4 * max(0.0, difficulty - 0.5)


def weighted_choice(rng: random.Random, weights: Sequence[float]) -> int:
    return rng.choices(range(len(weights)), weights=weights)[0]


@dataclass(frozen=True)
class Knobs:
    """The synthetic config's knobs, read once."""

    num_examples: int
    num_institutions: int
    difficulty: float
    institution_vocab: float

    @classmethod
    def of(cls, cfg: SyntheticConfig) -> Knobs:
        return cls(cfg.num_examples, cfg.num_institutions, cfg.difficulty, cfg.institution_vocab)


def house_or_common(rng: random.Random, house: T, common: Sequence[T], rate: float) -> T:
    """The institution's own word with probability ``rate``, else a common one."""
    return house if rng.random() < rate else rng.choice(common)
