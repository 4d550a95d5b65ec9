"""Task registry: the four benchmark tasks and the two SYNTHETIC offline tasks.

``get_task(name)`` returns the task object; ``task.load(cfg.task, cfg.seed)`` its examples.
One module per task, ``base`` (the task interface and metrics), ``sources`` (local files and
the hub), ``partition`` (each institution's non-IID shard, seeded).

May import: numpy, datasets (lazily, for hub tasks), ``config``, ``errors``.
Exports: ``TASKS``, ``get_task``, the task base classes, ``Example``, the metrics.
"""

from __future__ import annotations

from securefed.errors import ConfigError
from securefed.tasks.base import (
    ClassificationTask,
    Example,
    MultipleChoiceTask,
    Task,
    accuracy,
    column_values,
    macro_f1,
)
from securefed.tasks.fiqa_sa import FiQASentiment
from securefed.tasks.fpb import FinancialPhraseBank
from securefed.tasks.medmcqa import MedMCQA
from securefed.tasks.medqa import MedQA
from securefed.tasks.synthetic_finance import SyntheticFinance
from securefed.tasks.synthetic_medqa import SyntheticMedQA

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        SyntheticFinance(),
        SyntheticMedQA(),
        MedQA(),
        MedMCQA(),
        FinancialPhraseBank(),
        FiQASentiment(),
    )
}


def get_task(name: str) -> Task:
    """The registered task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError("task.name", name, f"one of {', '.join(TASKS)}") from None


__all__ = [
    "TASKS",
    "ClassificationTask",
    "Example",
    "MultipleChoiceTask",
    "Task",
    "accuracy",
    "column_values",
    "get_task",
    "macro_f1",
]
