"""Everything the audit reads from a run folder, read once, with the SHA-256 of each file.

The audit is built from this snapshot alone (no training, no model), so rebuilding it from an
unchanged run folder gives the same JSON. Files a crashed or still-running run has not written
yet (``results.json``, baselines, ledgers, transcripts) are ``None`` / empty, not errors;
the report then shows those sections as absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from securefed.config import BASELINE_NAMES, RunConfig
from securefed.errors import RunFolderError
from securefed.run.contract import SHAPES, check_record, run_config
from securefed.run.folder import (
    CANARIES,
    CONFIG,
    ENERGY,
    ENVIRONMENT,
    LEDGERS,
    METRICS,
    PARTITION,
    RESULTS,
    WARNINGS,
    RunFolder,
    baseline_rel,
    sha256_file,
)
from securefed.run.records import LedgersFile, Results, RoundRecord

REQUIRED_FILES = (CONFIG, ENVIRONMENT, PARTITION)
NODE_JOINS = "join.jsonl"  # a Flower node's record of the settings it joined the run with
BASELINES = BASELINE_NAMES  # every baseline a run can write, from the config's own type


@dataclass
class RunSnapshot:
    """The parsed files of one run folder and the hash of every file read."""

    path: Path
    config: dict  # config.yaml as written (hashed, shown); ``cfg`` is the same through validate()
    cfg: RunConfig
    environment: dict
    partition: dict
    metrics: list[RoundRecord]  # each line checked against the shape by run.contract
    results: Results | None
    ledgers: LedgersFile | None
    transcripts: dict[int, dict]  # round -> secagg/round-NNNN.json
    baselines: dict[str, dict]
    energy: dict | None  # energy.json: per invocation and total
    warnings: list[dict]  # warnings.json: each warning the run printed, once
    canaries: dict | None  # canaries.json: written when a run with canaries ends
    sources: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    # A Flower deployment: each institution's own records, filed under nodes/<id>/
    node_metrics: dict[str, list[dict]] = field(default_factory=dict)
    node_joins: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cfg.name

    def epsilon_after(self, record: dict) -> dict:
        """Each institution's epsilon after ``record``'s round as the run states it: in the
        record itself (simulate: the server keeps the ledgers) or, where each node keeps its
        own ledger (Flower), the last figure the node recorded up to that round (0 before it
        first trained); infinity stays the string "inf"."""
        if record["epsilon"] or not self.node_metrics:
            return dict(record["epsilon"] or {})
        stated, last = {}, record["round"]
        for c, records in self.node_metrics.items():
            upto = [r["epsilon"] for r in records if "epsilon" in r and r["round"] <= last]
            stated[c] = upto[-1] if upto else 0.0
        return stated


def read_snapshot(run_dir: str | Path) -> RunSnapshot:
    """Read a run folder; raises ``RunFolderError`` if it is not one."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a run folder (no such directory)")
    missing = [rel for rel in REQUIRED_FILES if not (path / rel).is_file()]
    if missing == [PARTITION] and _server_without_data(path / ENVIRONMENT):
        missing = []  # a Flower server that evaluates nothing never sees the data
    if missing:
        raise RunFolderError(f"{path} is not a run folder: {', '.join(missing)} missing")
    sources: dict[str, str] = {}

    def load(rel: str, parse=json.loads) -> Any:
        file = path / rel
        if not file.is_file():
            return None
        sources[rel] = sha256_file(file)
        try:
            obj = parse(file.read_text())
        except (ValueError, yaml.YAMLError) as exc:
            raise RunFolderError(f"{file} cannot be parsed: {exc}") from None
        if rel in SHAPES:
            check_record(obj, rel, folder=path)
        return obj

    config = load(CONFIG, yaml.safe_load)
    if not isinstance(config, dict):
        raise RunFolderError(f"{path / CONFIG} is not a YAML mapping")
    environment, partition = load(ENVIRONMENT), load(PARTITION)
    if (path / METRICS).is_file():
        sources[METRICS] = sha256_file(path / METRICS)
    folder = RunFolder(path)
    try:
        metrics = folder.read_metrics()
    except ValueError as exc:
        raise RunFolderError(f"{path / METRICS} cannot be parsed: {exc}") from None
    for number, record in enumerate(metrics, start=1):
        check_record(record, METRICS, f"line {number}", folder=path)
    transcripts = {r: load(rel) for r, rel in folder.transcripts().items()}
    baselines = {name: obj for name in BASELINES if (obj := load(baseline_rel(name))) is not None}
    node_metrics, node_joins = {}, {}
    for node in sorted((path / "nodes").glob("*"), key=lambda p: p.name):
        node_metrics[node.name] = load(f"nodes/{node.name}/{METRICS}", _json_lines) or []
        node_joins[node.name] = load(f"nodes/{node.name}/{NODE_JOINS}", _json_lines) or []
    return RunSnapshot(
        path=path,
        config=config,
        cfg=run_config(config),
        environment=environment,
        partition=partition or {},
        metrics=metrics,
        results=load(RESULTS),
        ledgers=load(LEDGERS),
        transcripts=transcripts,
        baselines=baselines,
        energy=load(ENERGY),
        warnings=load(WARNINGS) or [],
        canaries=load(CANARIES),
        sources=dict(sorted(sources.items())),
        node_metrics=node_metrics,
        node_joins=node_joins,
    )


def _server_without_data(environment: Path) -> bool:
    try:
        transport = json.loads(environment.read_text()).get("transport") or {}
    except ValueError:
        return False
    return transport.get("server_evaluation") is False


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def json_safe(obj: Any) -> Any:
    """Strict-JSON copy: infinities and NaN become the strings "inf", "-inf", "nan"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def as_float(value: Any) -> float | None:
    """A number from the run folder or an audit ("inf" strings included); None if absent."""
    if value is None or isinstance(value, bool):
        return None
    return float(value)
