"""FiQA-SA (FiQA 2018 task 1): aspect-based sentiment of financial headlines and microblogs.

Hub: ``TheFinAI/fiqa-sentiment-classification`` (Parquet; splits ``train`` 822, ``valid`` 117,
``test`` 234).

Schema (local files use the same; JSONL, CSV or Parquet):

============  ================================================================================
``sentence``  string
``score``     float in [-1, 1], the sentiment towards ``target``
``target``    string, the entity the score is about (optional; shown in the prompt)
``aspect``    string (optional), ``type`` ``headline``/``post`` (optional), ``_id`` (optional)
============  ================================================================================

The continuous score becomes three classes with the thresholds FinGPT's benchmark uses:
``score < -0.1`` negative, ``-0.1 <= score < 0.1`` neutral, ``score >= 0.1`` positive.
"""

from __future__ import annotations

import math
from typing import ClassVar

from securefed.config import TaskConfig
from securefed.tasks.base import ClassificationTask, Example
from securefed.tasks.fpb import SENTIMENT_INSTRUCTION, SENTIMENTS
from securefed.tasks.sources import HubSource, is_blank, open_rows, required_text, text_field

SCORE_RANGE = (-1.0, 1.0)  # FiQA 2018 task 1: sentiment scores lie in [-1, 1]
NEGATIVE_BELOW = -0.1
POSITIVE_FROM = 0.1
EXTRA_COLUMNS = ("_id", "target", "aspect", "type")


def score_to_label(score: float) -> int:
    """0 negative (< -0.1), 1 neutral ([-0.1, 0.1)), 2 positive (>= 0.1)."""
    if score < NEGATIVE_BELOW:
        return 0
    return 1 if score < POSITIVE_FROM else 2


class FiQASentiment(ClassificationTask):
    name: ClassVar[str] = "fiqa_sa"
    label_names: ClassVar[tuple[str, ...]] = SENTIMENTS
    description: ClassVar[str] = "FiQA-SA, financial aspect sentiment (score thresholds +/-0.1)"
    instruction: ClassVar[str] = SENTIMENT_INSTRUCTION
    hub: ClassVar[HubSource] = HubSource("TheFinAI/fiqa-sentiment-classification")
    required: ClassVar[tuple[str, ...]] = ("sentence", "score")

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        rows = open_rows(task_cfg, self.hub, self.required, self.name)
        examples = []
        for i, row in enumerate(rows):
            score = row["score"]
            if (
                is_blank(score)
                or not isinstance(score, int | float)
                or isinstance(score, bool)
                or not math.isfinite(score)
                or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]
            ):
                raise rows.bad_value(i, "score", score, "a number in [-1, 1]")
            columns = {c: text_field(row, c) for c in EXTRA_COLUMNS}
            examples.append(
                Example(
                    text=required_text(rows, i, row, "sentence"),
                    choices=SENTIMENTS,
                    label=score_to_label(float(score)),
                    columns={**columns, "score": repr(float(score)), "source": "fiqa_sa"},
                )
            )
        return examples

    def prompt(self, example: Example) -> str:
        target = example.columns.get("target")
        about = f"\nTarget: {target}" if target else ""
        return f"{self.instruction}\nText: {example.text}{about}\nSentiment:"

    def encoder_text(self, example: Example) -> str:
        target = example.columns.get("target")
        return f"{example.text} (target: {target})" if target else example.text
