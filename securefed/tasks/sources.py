"""Where a real task's rows come from: a local JSONL/CSV/Parquet file or a Hugging Face dataset.

Both go through ``datasets.load_dataset`` so that a local file is read exactly as the hub copy
would be (nested JSON objects, class labels, types). A missing column is a ``DataError`` that
names the column and the source; a source that cannot be reached or read names the key to fix.

A local JSONL or CSV file is first read as text here: bytes that are not UTF-8, a line that is
not a JSON object (a truncated last line, ``NaN``), or a CSV record with the wrong number of
fields is reported with its line number, which ``datasets`` does not give. The same pass
records the line each row starts on, so every later error about a row names the line an
editor shows (Parquet and hub rows: the 1-based row number).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from securefed.config import TaskConfig
from securefed.errors import ConfigError, DataError

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class HubSource:
    """A task's default dataset on the Hugging Face hub.

    ``revision``/``config_as_data_dir`` serve datasets whose main branch is a loading script
    (which ``datasets`` >= 4 refuses): their Parquet export lives on ``refs/convert/parquet``,
    one folder per config.
    """

    hub_id: str
    hub_config: str | None = None
    revision: str | None = None
    config_as_data_dir: bool = False


@dataclass(frozen=True)
class Rows:
    """The rows of a source, the name used for it in error messages and, for JSONL and CSV
    files, the line each row starts on."""

    table: datasets.Dataset
    source: str
    lines: tuple[int, ...] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.table)

    def where(self, index: int) -> str:
        """Row ``index`` (0-based, source order) as the file numbers it: its line, or its
        1-based row number where the source has no lines."""
        if self.lines is not None:
            return f"{self.source} line {self.lines[index]}"
        return f"{self.source} row {index + 1}"

    def bad_value(self, index: int, column: str, value: Any, allowed: str) -> DataError:
        """The one-line error for a value that is not allowed in ``column`` of row ``index``."""
        shown = "blank" if is_blank(value) else repr(value)
        return DataError(f"{self.where(index)}: column {column!r} is {shown}; allowed: {allowed}")


def open_rows(
    task_cfg: TaskConfig, default: HubSource, required: Sequence[str], task_name: str
) -> Rows:
    """Rows from ``task.path`` if set, else from the hub (``task.hub_id`` overrides the default)."""
    rows = _read_file(task_cfg.path) if task_cfg.path is not None else _read_hub(task_cfg, default)
    if len(rows.table) == 0:
        raise DataError(f"{rows.source}: no rows; task {task_name} needs {', '.join(required)}")
    missing = [c for c in required if c not in rows.table.column_names]
    if missing:
        raise DataError(
            f"{rows.source}: missing column {missing[0]!r} required by task {task_name} "
            f"(needs {', '.join(required)}; found {', '.join(rows.table.column_names)})"
        )
    return rows


def _read_file(path: str) -> Rows:
    p = Path(path)
    fmt = FILE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError("task.path", path, f"a file ending in {', '.join(FILE_FORMATS)}")
    if not p.is_file():
        raise ConfigError("task.path", path, "an existing file")
    lines = None
    if fmt == "csv":
        lines = _csv_record_lines(path, _utf8_text(p))
    elif fmt == "json":
        lines = _json_record_lines(path, _utf8_text(p), p.suffix.lower() == ".jsonl")
    if lines == ():  # nothing but blank lines: no rows (``datasets`` fails with StopIteration)
        return Rows(datasets.Dataset.from_dict({}), path, lines)
    try:
        table = datasets.load_dataset(fmt, data_files=str(p), split="train")
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise DataError(f"{path}: not a readable {fmt} file ({exc})") from None
    if lines is not None and len(lines) != len(table):  # rows not one per record: count them
        lines = None
    return Rows(table, path, lines)


def _utf8_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise DataError(
            f"{path} line {line}: byte {column} (0x{raw[exc.start]:02x}) is not UTF-8; "
            "allowed: UTF-8 text (re-save the file as UTF-8)"
        ) from None


JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotFinite(name)


def _json_record_lines(path: str, text: str, json_lines: bool) -> tuple[int, ...] | None:
    """The line of every record of a JSON Lines file; None for a ``.json`` file holding one
    JSON document (an array of rows)."""
    if not json_lines:
        try:
            json.loads(text, parse_constant=_refuse_constant)
            return None
        except (json.JSONDecodeError, _NotFinite):
            pass  # not one document: JSON Lines, checked line by line below
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_refuse_constant)
        except _NotFinite as exc:
            raise DataError(
                f"{path} line {number}: {exc} is not a JSON number; allowed: a finite number, "
                "or null for a missing value"
            ) from None
        except json.JSONDecodeError as exc:
            cut = (
                " (the file looks truncated: its last line is cut off)"
                if number == len(lines)
                else ""
            )
            raise DataError(
                f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno}){cut}; "
                "allowed: one JSON object per line"
            ) from None
        if not isinstance(value, dict):
            kind = JSON_KINDS.get(type(value), "value")
            raise DataError(
                f"{path} line {number}: a JSON {kind}; allowed: one JSON object per line"
            )
        records.append(number)
    return tuple(records)


def _csv_record_lines(path: str, text: str) -> tuple[int, ...]:
    """The line each CSV record starts on (line 1 is the header); blank lines hold no record."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise DataError(
                f"{path}: no header line; allowed: a CSV file whose line 1 names the columns"
            )
        records, end = [], reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:
                continue
            if len(record) != len(header):
                raise DataError(
                    f"{path} line {start}: {len(record)} fields; allowed: {len(header)}, as in the "
                    "header (line 1)"
                )
            records.append(start)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return tuple(records)


def _read_hub(task_cfg: TaskConfig, default: HubSource) -> Rows:
    if task_cfg.hub_id is None or task_cfg.hub_id == default.hub_id:
        src = HubSource(
            default.hub_id,
            task_cfg.hub_config or default.hub_config,
            default.revision,
            default.config_as_data_dir,
        )
    else:
        src = HubSource(task_cfg.hub_id, task_cfg.hub_config)
    kwargs: dict[str, Any] = {"split": task_cfg.split, "revision": src.revision}
    if src.config_as_data_dir:
        kwargs["data_dir"] = src.hub_config
    else:
        kwargs["name"] = src.hub_config
    name = f"hub:{src.hub_id}" + (f"[{src.hub_config}]" if src.hub_config else "")
    try:
        table = datasets.load_dataset(src.hub_id, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(
            f"{name} split {task_cfg.split!r} could not be loaded "
            f"({exc.__class__.__name__}: {exc}); download it once and set task.path "
            "to a local JSONL/CSV/Parquet copy"
        ) from None
    return Rows(table, name)


def text_field(row: Mapping[str, Any], column: str) -> str:
    """A row's value as a stripped string; missing values become ''."""
    value = row.get(column)
    return "" if value is None else str(value).strip()


def required_text(rows: Rows, index: int, row: Mapping[str, Any], column: str) -> str:
    """A row's text in a column that must not be blank (the question, the sentence)."""
    value = row.get(column)
    if is_blank(value):
        raise rows.bad_value(index, column, value, "non-empty text")
    return str(value).strip()


def is_blank(value: Any) -> bool:
    """Missing: None, an empty or all-space string, or NaN (how CSV readers fill empty cells)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)
