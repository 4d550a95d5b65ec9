"""The run folder's contract with everything that reads it: each record's shape, checked once.

``folder`` owns the file names and ``records`` the shapes a run writes (TypedDicts); this
module reads a record back and checks every key its shape requires, through the nested shapes
too, and the config through ``validate()``. A renamed or missing key is then one
``RunFolderError`` naming the file and the key, not a ``None`` that surfaces pages later in a
compliance document. The shapes are the TypedDicts' own required keys: there is no second list.

The audit reads the folder through it (``audit.source.read_snapshot``: config, results,
ledgers, environment, partition and the metrics lines), and so do ``--verify`` (the same
snapshot), ``--resume`` (the ledgers), the sweep table and the Flower records collector
(results).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, is_typeddict

from securefed.config import RunConfig, validate
from securefed.errors import ConfigError, RunFolderError
from securefed.run.folder import (
    CONFIG,
    ENVIRONMENT,
    LEDGERS,
    METRICS,
    PARTITION,
    RESULTS,
    read_json,
)
from securefed.run.records import (
    EnvironmentFile,
    LedgersFile,
    PartitionFile,
    Results,
    RoundRecord,
)

# The shape each record file must have (metrics.jsonl: each line).
SHAPES: dict[str, type] = {
    RESULTS: Results,
    LEDGERS: LedgersFile,
    METRICS: RoundRecord,
    ENVIRONMENT: EnvironmentFile,
    PARTITION: PartitionFile,
}


def missing_keys(obj: Any, shape: type, where: str = "") -> list[str]:
    """The dotted keys ``shape`` requires that ``obj`` lacks, through nested TypedDicts and
    through lists of them (``clients[2].test_size``)."""
    if not isinstance(obj, Mapping):
        return [where or "<the whole record>"]
    hints = typing.get_type_hints(shape)
    out = []
    for key in sorted(shape.__required_keys__):
        dotted = f"{where}.{key}" if where else key
        if key not in obj:
            out.append(dotted)
        else:
            out += _nested(obj[key], hints[key], dotted)
    for key in sorted(shape.__optional_keys__ & set(obj)):
        out += _nested(obj[key], hints[key], f"{where}.{key}" if where else key)
    return out


def _nested(value: Any, hint: Any, where: str) -> list[str]:
    """What a value typed ``hint`` lacks: a TypedDict's keys, or each list item's."""
    if value is None:
        return []
    if is_typeddict(hint):
        return missing_keys(value, hint, where)
    if typing.get_origin(hint) is list and is_typeddict(item := typing.get_args(hint)[0]):
        if not isinstance(value, list):
            return [where]
        return [k for i, v in enumerate(value) for k in missing_keys(v, item, f"{where}[{i}]")]
    return []


def check_shape(obj: Any, shape: type, file: str | Path, where: str = "") -> None:
    """Raise ``RunFolderError`` naming ``file`` and the first key ``shape`` requires that
    ``obj`` lacks."""
    missing = missing_keys(obj, shape)
    if missing:
        at = f" ({where})" if where else ""
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RunFolderError(
            f"{file}{at}: required key '{missing[0]}' is missing{more}; the file was edited, "
            "or written by a securefed whose records differ from this one's"
        )


def check_record(obj: Any, rel: str, where: str = "", folder: Path | None = None) -> None:
    """``check_shape`` against the shape of the run-folder file ``rel`` (``SHAPES``)."""
    check_shape(obj, SHAPES[rel], folder / rel if folder else rel, where)


def read_record(run_dir: Path, rel: str) -> Any:
    """The record ``rel`` (one of ``SHAPES``) of a run folder, read and checked; None where the
    run has not written it (yet)."""
    path = Path(run_dir) / rel
    if not path.is_file():
        return None
    record = read_json(path)
    check_record(record, rel, folder=Path(run_dir))
    return record


def require(record: Mapping[str, Any], key: str, rel: str) -> Any:
    """``record[key]``, or a ``RunFolderError`` naming the file and the key."""
    if key not in record:
        raise RunFolderError(f"{rel}: required key '{key}' is missing")
    return record[key]


def run_config(raw: Mapping[str, Any]) -> RunConfig:
    """The run's ``config.yaml`` (parsed) through ``validate()``: an unknown, renamed or invalid
    key is an error naming the file and the key."""
    try:
        return validate(dict(raw))
    except ConfigError as exc:
        raise RunFolderError(f"{CONFIG}: {exc}") from None
