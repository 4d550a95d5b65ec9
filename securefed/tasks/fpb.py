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
from securefed.tasks.base import ClassificationTask, Example
from securefed.tasks.sources import HubSource, Rows, open_rows, required_text

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
                text=required_text(rows, i, row, "sentence"),
                choices=SENTIMENTS,
                label=_sentiment(row["label"], rows, i),
                columns={"source": "fpb"},
            )
            for i, row in enumerate(rows)
        ]


def _sentiment(value: Any, rows: Rows, index: int) -> int:
    """0-2 from an integer (a CSV column with an empty cell holds floats: 2.0) or a name."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number < len(SENTIMENTS):
        return number
    if isinstance(value, str) and value.strip().lower() in SENTIMENTS:
        return SENTIMENTS.index(value.strip().lower())
    raise rows.bad_value(index, "label", value, "0, 1, 2 or " + ", ".join(SENTIMENTS))
