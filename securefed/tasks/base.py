"""The common task model: one ``Example`` shape for every task, two task kinds.

A task turns its source (a hub dataset, a local file or a seeded generator) into a list of
``Example``s and knows how to present one to a model:

- a causal LM scores ``answer_texts(example)`` (classification: label words) or
  ``option_texts(example)`` (multiple choice: each option's text) as continuations of
  ``prompt(example)`` and predicts the candidate with the highest log-likelihood;
- an encoder with a classification head reads ``encoder_text(example)``; multiple choice on an
  encoder reads ``encoder_rows(example)``, the question and then each option as its own text.

Labels are always an index: into ``label_names`` for classification, into ``choices`` for
multiple choice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from securefed.config import TaskConfig
from securefed.errors import ConfigError

TaskKind = Literal["classification", "multiple_choice"]
OPTION_LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")
_SHUFFLE_STREAM = 0x5EED  # separates the load shuffle from any other use of the run seed


@dataclass(frozen=True)
class Example:
    """One labelled example.

    ``text`` is the sentence or question; ``choices`` the answer options (multiple choice) or the
    label names (classification); ``label`` an index into ``choices``; ``columns`` extra string
    columns (e.g. ``subject_name``, ``institution``, ``source``) for natural partitioning.
    """

    text: str
    choices: tuple[str, ...]
    label: int
    columns: dict[str, str] = field(default_factory=dict)


class Task(ABC):
    """A benchmark task: where its examples come from, how a model sees them, how it is scored."""

    name: ClassVar[str]
    kind: ClassVar[TaskKind]
    label_names: ClassVar[tuple[str, ...]]
    synthetic: ClassVar[bool] = False
    description: ClassVar[str]
    primary_metric: ClassVar[str] = "accuracy"

    @property
    def num_choices(self) -> int:
        return len(self.label_names)

    def load(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        """All examples of the task, in a seeded shuffled order, capped at ``max_examples``."""
        examples = self.read(task_cfg, seed)
        order = np.random.default_rng([seed, _SHUFFLE_STREAM]).permutation(len(examples))
        if task_cfg.max_examples is not None:
            order = order[: task_cfg.max_examples]
        return [examples[i] for i in order]

    @abstractmethod
    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        """Every example of the source, in source order (``load`` shuffles and caps)."""

    @abstractmethod
    def prompt(self, example: Example) -> str:
        """Prompt for a causal LM, ending right before the answer."""

    @abstractmethod
    def metrics(self, y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
        """Scores of predicted label indices against the true ones."""


class ClassificationTask(Task):
    """Sentence classification (financial sentiment): accuracy and macro-F1."""

    kind: ClassVar[TaskKind] = "classification"
    instruction: ClassVar[str]

    def prompt(self, example: Example) -> str:
        return f"{self.instruction}\nText: {example.text}\nSentiment:"

    def answer_texts(self, example: Example) -> list[str]:
        """Candidate continuations of ``prompt(example)``, one per label, in label order."""
        return [f" {name}" for name in self.label_names]

    def encoder_text(self, example: Example) -> str:
        """Input of an encoder with a classification head."""
        return example.text

    def metrics(self, y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
        return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}


class MultipleChoiceTask(Task):
    """Multiple-choice question answering with lettered options: accuracy."""

    kind: ClassVar[TaskKind] = "multiple_choice"
    instruction: ClassVar[str]

    def prompt(self, example: Example) -> str:
        letters = OPTION_LETTERS[: len(example.choices)]
        options = "\n".join(
            f"{letter}. {option}" for letter, option in zip(letters, example.choices, strict=True)
        )
        return f"{self.instruction}\nQuestion: {example.text}\n{options}\nAnswer:"

    def option_texts(self, example: Example) -> list[str]:
        """Continuations of ``prompt(example)`` a causal LM scores: each option's own text."""
        return [f" {option}" for option in example.choices]

    def encoder_rows(self, example: Example) -> list[str]:
        """Texts an encoder embeds for multiple choice: the question, then each option."""
        return [example.text, *example.choices]

    def metrics(self, y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
        return {"accuracy": accuracy(y_true, y_pred)}


def _as_label_arrays(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[np.ndarray, ...]:
    t = np.asarray(y_true, dtype=np.int64)  # (n,)
    p = np.asarray(y_pred, dtype=np.int64)  # (n,)
    if t.shape != p.shape or t.ndim != 1 or t.size == 0:
        raise ValueError(f"need two equal-length non-empty label lists, got {t.shape}, {p.shape}")
    return t, p


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of predictions equal to the true label."""
    t, p = _as_label_arrays(y_true, y_pred)
    return float(np.mean(t == p))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``.

    Same definition as ``sklearn.metrics.f1_score(average="macro")``; written in numpy so that
    scikit-learn stays out of the runtime dependencies. F1 = 2TP / (2TP + FP + FN).
    """
    t, p = _as_label_arrays(y_true, y_pred)
    classes = np.union1d(t, p)  # (c,)
    tp = np.array([np.sum((t == c) & (p == c)) for c in classes])
    fp = np.array([np.sum((t != c) & (p == c)) for c in classes])
    fn = np.array([np.sum((t == c) & (p != c)) for c in classes])
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))


def column_values(examples: Sequence[Example], column: str) -> list[str]:
    """The value of one extra column for every example (the groups of ``natural`` partitioning)."""
    missing = [i for i, ex in enumerate(examples) if column not in ex.columns]
    if missing:
        available = sorted(set().union(*(ex.columns for ex in examples)))
        raise ConfigError(
            "partition.column",
            column,
            f"a column every example has; available: {', '.join(available) or 'none'}",
        )
    return [ex.columns[column] for ex in examples]


def reject_source_overrides(task: Task, task_cfg: TaskConfig) -> None:
    """Synthetic tasks are generated: a path or hub id set for one is a config mistake."""
    for key in ("path", "hub_id", "hub_config"):
        value = getattr(task_cfg, key)
        if value is not None:
            raise ConfigError(f"task.{key}", value, f"null for the generated task {task.name}")
