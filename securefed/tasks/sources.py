"""Where a real task's rows come from: a local JSONL/CSV/Parquet file or a Hugging Face dataset.

Both go through ``datasets.load_dataset`` so that a local file is read exactly as the hub copy
would be (nested JSON objects, class labels, types). A missing column is a ``DataError`` that
names the column and the source; a source that cannot be reached or read names the key to fix.
"""

from __future__ import annotations

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
    """The rows of a source and the name used for it in error messages."""

    table: datasets.Dataset
    source: str

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.table)


def open_rows(
    task_cfg: TaskConfig, default: HubSource, required: Sequence[str], task_name: str
) -> Rows:
    """Rows from ``task.path`` if set, else from the hub (``task.hub_id`` overrides the default)."""
    if task_cfg.path is not None:
        rows = Rows(_read_file(task_cfg.path), task_cfg.path)
    else:
        rows = _read_hub(task_cfg, default)
    missing = [c for c in required if c not in rows.table.column_names]
    if missing:
        raise DataError(
            f"{rows.source}: missing column {missing[0]!r} required by task {task_name} "
            f"(needs {', '.join(required)}; found {', '.join(rows.table.column_names)})"
        )
    return rows


def _read_file(path: str) -> datasets.Dataset:
    p = Path(path)
    fmt = FILE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError("task.path", path, f"a file ending in {', '.join(FILE_FORMATS)}")
    if not p.is_file():
        raise ConfigError("task.path", path, "an existing file")
    try:
        return datasets.load_dataset(fmt, data_files=str(p), split="train")
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise DataError(f"{path}: not a readable {fmt} file ({exc})") from None


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
