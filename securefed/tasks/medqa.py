"""MedQA (USMLE, 4 options): medical multiple-choice questions from US licensing exams.

Hub: ``GBaker/MedQA-USMLE-4-options`` (JSON; splits ``train`` 10,178 and ``test`` 1,273).

Schema (local files use the same; JSONL, CSV or Parquet):

=================  ===========================================================================
``question``       string, the case vignette and question
``options``        object ``{"A": str, "B": str, "C": str, "D": str}``; in CSV a JSON (or
                   Python-literal) string of that object
``answer_idx``     string, the correct letter ``A``-``D``
``answer``         string, the correct option's text (optional, not used)
``meta_info``      string, ``step1`` or ``step2&3`` (optional; kept as a column)
``metamap_phrases`` list of strings (optional, not used)
=================  ===========================================================================
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from securefed.config import TaskConfig
from securefed.tasks.base import OPTION_LETTERS, Example, MultipleChoiceTask
from securefed.tasks.sources import HubSource, Rows, open_rows, required_text, text_field

LETTERS = OPTION_LETTERS[:4]


class MedQA(MultipleChoiceTask):
    name: ClassVar[str] = "medqa"
    label_names: ClassVar[tuple[str, ...]] = LETTERS
    description: ClassVar[str] = "MedQA-USMLE, 4-option medical multiple choice"
    instruction: ClassVar[str] = "Answer the following USMLE-style medical question."
    hub: ClassVar[HubSource] = HubSource("GBaker/MedQA-USMLE-4-options")
    required: ClassVar[tuple[str, ...]] = ("question", "options", "answer_idx")

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        rows = open_rows(task_cfg, self.hub, self.required, self.name)
        examples = []
        for i, row in enumerate(rows):
            options = _options(row["options"], rows, i)
            letter = text_field(row, "answer_idx").upper()
            if letter not in LETTERS:
                raise rows.bad_value(i, "answer_idx", row["answer_idx"], "one of A, B, C, D")
            examples.append(
                Example(
                    text=required_text(rows, i, row, "question"),
                    choices=tuple(options[k] for k in LETTERS),
                    label=LETTERS.index(letter),
                    columns={"meta_info": text_field(row, "meta_info"), "source": "medqa"},
                )
            )
        return examples


def _options(value: Any, rows: Rows, index: int) -> dict[str, str]:
    parsed = _parse_object(value) if isinstance(value, str) else value  # CSV: the object as text
    if not isinstance(parsed, Mapping) or any(parsed.get(k) is None for k in LETTERS):
        raise rows.bad_value(
            index, "options", value, 'an object mapping each of A, B, C, D to text: {"A": ...}'
        )
    value = parsed
    return {k: str(value[k]).strip() for k in LETTERS}


def _parse_object(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:  # pandas writes dicts as Python literals
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
