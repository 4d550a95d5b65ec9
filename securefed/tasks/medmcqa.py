"""MedMCQA: 4-option medical entrance-exam questions (AIIMS and NEET PG), 21 subjects.

Hub: ``openlifescienceai/medmcqa`` (Parquet; splits ``train`` 182,822, ``validation`` 4,183,
``test`` 6,150 whose answers are withheld: ``cop`` is -1 there).

Schema (local files use the same; JSONL, CSV or Parquet):

================  ============================================================================
``question``      string
``opa`` .. ``opd``  strings, options A-D
``cop``           correct option: integer 0-3 (the hub's class label a-d) or a letter a-d;
                  -1 or empty marks an unlabelled row, which is skipped. (The original GitHub
                  JSON numbers options 1-4: subtract 1 first.)
``subject_name``  string, one of the 21 subjects (optional; column for natural partitioning)
``topic_name``    string (optional), ``choice_type`` ``single``/``multi`` (optional),
``id``            string (optional), ``exp`` explanation (optional, not used)
================  ============================================================================
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from securefed.config import TaskConfig
from securefed.errors import DataError
from securefed.tasks.base import OPTION_LETTERS, Example, MultipleChoiceTask
from securefed.tasks.sources import HubSource, Rows, open_rows, required_text, text_field

OPTION_COLUMNS = ("opa", "opb", "opc", "opd")
EXTRA_COLUMNS = ("id", "subject_name", "topic_name", "choice_type")


class MedMCQA(MultipleChoiceTask):
    name: ClassVar[str] = "medmcqa"
    label_names: ClassVar[tuple[str, ...]] = OPTION_LETTERS[:4]
    description: ClassVar[str] = "MedMCQA, 4-option medical entrance-exam multiple choice"
    instruction: ClassVar[str] = "Answer the following medical entrance-exam question."
    hub: ClassVar[HubSource] = HubSource("openlifescienceai/medmcqa")
    required: ClassVar[tuple[str, ...]] = ("question", *OPTION_COLUMNS, "cop")

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        rows = open_rows(task_cfg, self.hub, self.required, self.name)
        examples = []
        for i, row in enumerate(rows):
            label = _correct_option(row["cop"], rows, i)
            if label is None:
                continue
            columns = {c: text_field(row, c) for c in EXTRA_COLUMNS}
            examples.append(
                Example(
                    text=required_text(rows, i, row, "question"),
                    choices=tuple(text_field(row, c) for c in OPTION_COLUMNS),
                    label=label,
                    columns={**columns, "source": "medmcqa"},
                )
            )
        if not examples:
            raise DataError(
                f"{rows.source}: no labelled rows (every cop is -1 or empty); allowed: at least "
                "one row whose cop is 0-3 or a-d"
            )
        return examples


def _correct_option(value: Any, rows: Rows, index: int) -> int | None:
    """0-3 from an integer or a letter; None for an unlabelled row."""
    original = value
    if isinstance(value, float):  # CSV columns with empty cells are read as floats
        value = None if math.isnan(value) else int(value) if value.is_integer() else value
    if value is None or value == "" or value == -1:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("a", "b", "c", "d"):
            return "abcd".index(text)
        if text.lstrip("-").isdigit():
            value = int(text)
            if value == -1:
                return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return value
    raise rows.bad_value(index, "cop", original, "0-3, a-d, or -1 or empty for an unlabelled row")
