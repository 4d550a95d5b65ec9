"""The run folder: everything a run produces, written so that nothing is lost on a crash.

Layout (all paths relative to the run folder)::

    config.yaml                  resolved config (every key)
    environment.json             library versions, platform, vector spec, base-weights hash
    partition.json               per-client sizes and label histograms
    metrics.jsonl                one hash-chained record per finished federated round
    checkpoints/initial.safetensors, checkpoints/round-0003.safetensors
    secagg/round-0003.json       secure-aggregation transcript summary of that round
    privacy/ledgers.json         every institution's privacy events (recomputable epsilon)
    baselines/centralized.json, baselines/isolated.json
    state.json                   last finished round (what --resume continues from)
    results.json                 the summary: federated, centralized, isolated, privacy
    warnings.json                each warning the run printed, once

Each metrics record carries ``prev_hash`` (the previous record's ``record_hash``) and the
SHA-256 of every artefact it refers to, so ``securefed audit --verify`` can detect edits.
Files are written to a temporary name and renamed, so a crash leaves the old file or the new.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from securefed.errors import RunFolderError

GENESIS_HASH = "0" * 64


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def record_hash(record: dict) -> str:
    """Hash of a metrics record without its own ``record_hash`` field."""
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunFolderError(f"{path} is missing")
    return json.loads(path.read_text())


class RunFolder:
    """Read and write one run's artefacts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ---- paths -------------------------------------------------------------------------
    def file(self, rel: str) -> Path:
        return self.path / rel

    def checkpoint_rel(self, round_index: int | None) -> str:
        name = "initial" if round_index is None else f"round-{round_index:04d}"
        return f"checkpoints/{name}.safetensors"

    # ---- adapters ----------------------------------------------------------------------
    def save_adapter(self, rel: str, vector: np.ndarray, spec_hash: str) -> str:
        path = self.file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(
            {"adapter": np.ascontiguousarray(vector, dtype=np.float32)},
            str(tmp),
            metadata={"vector_spec_hash": spec_hash},
        )
        os.replace(tmp, path)
        return sha256_file(path)

    def load_adapter(self, rel: str) -> np.ndarray:
        path = self.file(rel)
        if not path.is_file():
            raise RunFolderError(f"checkpoint {path} is missing")
        return load_file(str(path))["adapter"]

    # ---- metrics log -------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        path = self.file("metrics.jsonl")
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def append_metrics(self, record: dict) -> dict:
        """Chain ``record`` to the last one, hash it, append it; returns the stored record."""
        previous = self.read_metrics()
        record = dict(record, prev_hash=previous[-1]["record_hash"] if previous else GENESIS_HASH)
        record["record_hash"] = record_hash(record)
        lines = [json.dumps(r, sort_keys=True, allow_nan=True) for r in [*previous, record]]
        atomic_write_text(self.file("metrics.jsonl"), "\n".join(lines) + "\n")
        return record

    def truncate_metrics(self, last_round: int) -> None:
        """Drop records after ``last_round`` (a crash between log and state write)."""
        kept = [r for r in self.read_metrics() if r["round"] <= last_round]
        text = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in kept)
        atomic_write_text(self.file("metrics.jsonl"), text)

    def artefact_hashes(self, rels: list[str]) -> dict[str, str]:
        return {rel: sha256_file(self.file(rel)) for rel in rels}
