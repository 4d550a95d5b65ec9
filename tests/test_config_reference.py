"""The documentation site's generated configuration reference covers the schema.

The page (docs/_hooks/config_reference.py, run by `make docs`) is built from RunConfig's JSON
schema; this test walks the pydantic models themselves, so a key the generator skipped, or a
default it misreported, fails here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from securefed.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    path = ROOT / "docs" / "_hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _leaf_fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _leaf_fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells: a pipe inside a code span or escaped divides nothing."""
    cells, cell, in_code, previous = [], "", False, ""
    for char in row:
        in_code ^= char == "`"
        if char == "|" and not in_code and previous != "\\":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
        previous = char
    return cells[1:]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    page = _generator().render()
    cells = [_cells(line) for line in page.splitlines() if line.startswith("| `")]
    assert all(len(c) == 6 for c in cells)
    return {c[0].strip("`"): c for c in cells}


LEAVES = dict(_leaf_fields(RunConfig))


def test_the_schema_has_the_keys_the_walk_expects():
    assert len(LEAVES) > 80 and "secure_aggregation.dropout.rounds" in LEAVES


@pytest.mark.parametrize("key", sorted(LEAVES))
def test_every_config_key_is_on_the_generated_page_with_its_schema_default(rows, key):
    assert key in rows, f"{key} is missing from the generated configuration reference"
    default = LEAVES[key].get_default(call_default_factory=True)
    assert rows[key][3] == f"`{json.dumps(default)}`", (key, rows[key])


def test_the_page_lists_nothing_the_schema_does_not_have(rows):
    assert sorted(rows) == sorted(LEAVES)


def test_yaml_comments_follow_nesting_continuations_and_documented_unset_keys():
    text = """\
# name: my-run                # the file's name
seed: 0                        # seeds everything
task:
  name: a                      # one of a | b
                               # second line
  path: null
# a comment that belongs to no key
dp:
  enabled: false               # sample-level
"""
    assert _generator().yaml_comments(text) == {
        "name": "the file's name",
        "seed": "seeds everything",
        "task.name": "one of a | b second line",
        "dp.enabled": "sample-level",
    }


def test_the_embedded_default_documents_the_keys_it_sets(rows):
    described = [key for key, cells in rows.items() if cells[5]]
    assert len(described) >= 0.8 * len(rows), "default.yaml's comments no longer reach the page"
