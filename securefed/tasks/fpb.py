"""Financial PhraseBank (Malo et al. 2014): sentiment of financial news sentences.

Hub: ``takala/financial_phrasebank``, config ``sentences_allagree`` (2,264 sentences on which
every annotator agreed; also ``sentences_50agree``, ``sentences_66agree``,
``sentences_75agree``). One ``train`` split. Its main branch is a loading script, which
``datasets`` >= 4 refuses, so the loader reads the hub's own Parquet export
(``revision="refs/convert/parquet"``, one folder per config). Setting ``task.hub_id`` to another
repository loads that one with ``task.hub_config`` as its config name.

Schema (local files use the same; JSONL, CSV or Parquet):

============  ================================================================================
``sentence``  string
``label``     integer 0 negative, 1 neutral, 2 positive (the hub's class label), or the name
============  ================================================================================
"""

from __future__ import annotations

from typing import Any, ClassVar

from securefed.config import TaskConfig
from securefed.errors import DataError
from securefed.tasks.base import ClassificationTask, Example
from securefed.tasks.sources import HubSource, open_rows, text_field

SENTIMENTS = ("negative", "neutral", "positive")
SENTIMENT_INSTRUCTION = (
    "Classify the sentiment of this financial text as negative, neutral or positive."
)


class FinancialPhraseBank(ClassificationTask):
    name: ClassVar[str] = "fpb"
    label_names: ClassVar[tuple[str, ...]] = SENTIMENTS
    description: ClassVar[str] = "Financial PhraseBank, 3-class financial news sentiment"
    instruction: ClassVar[str] = SENTIMENT_INSTRUCTION
    hub: ClassVar[HubSource] = HubSource(
        "takala/financial_phrasebank",
        "sentences_allagree",
        revision="refs/convert/parquet",
        config_as_data_dir=True,
    )
    required: ClassVar[tuple[str, ...]] = ("sentence", "label")

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        rows = open_rows(task_cfg, self.hub, self.required, self.name)
        return [
            Example(
                text=text_field(row, "sentence"),
                choices=SENTIMENTS,
                label=_sentiment(row["label"], rows.source, i),
                columns={"source": "fpb"},
            )
            for i, row in enumerate(rows)
        ]


def _sentiment(value: Any, source: str, row: int) -> int:
    if isinstance(value, int) and 0 <= value < len(SENTIMENTS):
        return value
    if isinstance(value, str) and value.strip().lower() in SENTIMENTS:
        return SENTIMENTS.index(value.strip().lower())
    raise DataError(f"{source}: row {row}: label {value!r} is not 0-2 or one of {SENTIMENTS}")
