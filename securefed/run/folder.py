"""The run folder: everything a run produces, written so that nothing is lost on a crash.

Layout (all paths relative to the run folder)::

    config.yaml                  resolved config (every key)
    environment.json             library versions, platform, vector spec, base-weights hash
    partition.json               per-client sizes and label histograms
    tuning.json                  training.lr_grid set: each arm's learning rate (run.tuning)
    metrics.jsonl                one hash-chained record per finished federated round
    checkpoints/initial.safetensors, checkpoints/round-0003.safetensors
    checkpoints/server-0003.safetensors  the server optimizer's state after that round
                                 (stateful optimizers only: fedavgm, fedadam, ...)
    secagg/round-0003.json       secure-aggregation transcript summary of that round
    privacy/ledgers.json         every institution's privacy events (recomputable epsilon)
    baselines/centralized.json, baselines/isolated.json
    state.json                   last finished round (what --resume continues from)
    results.json                 the summary: federated, centralized, isolated, privacy
    energy.json                  energy and time of every invocation
    warnings.json                each warning the run printed, once
    canaries.json                audit.canaries > 0: the canaries' seed and scores (at the end)
    canary_trace.safetensors     gradient canaries: their carriers' steps the scores come from
    flower/progress.jsonl        Flower runs: the server's stage events, as they happen
    nodes/<id>/                  Flower runs: each node's own records, filed for the audit

This module is the only one that knows these names: everything else asks it.

Each metrics record carries ``prev_hash`` (the previous record's ``record_hash``) and the
SHA-256 of every artefact it refers to, so ``securefed audit --verify`` can detect edits.
Files are written to a temporary name and renamed, so a crash leaves the old file or the new.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, load_file, save, save_file

from securefed.errors import OutputError, RunFolderError
from securefed.run.lock import LOCK, RunLock, release_folder

GENESIS_HASH = "0" * 64

CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
PARTITION = "partition.json"
METRICS = "metrics.jsonl"
STATE = "state.json"
RESULTS = "results.json"
LEDGERS = "privacy/ledgers.json"
ENERGY = "energy.json"
WARNINGS = "warnings.json"
FLOWER_PROGRESS = "flower/progress.jsonl"
CANARIES = "canaries.json"
AUDIT_RECORD = "audit.json"  # an audit folder's record (audit/outputs.py writes it)
TUNING = "tuning.json"
CANARY_TRACE = "canary_trace.safetensors"


def checkpoint_rel(round_index: int | None) -> str:
    """The global adapter after ``round_index`` (``None``: the one every run starts from)."""
    name = "initial" if round_index is None else f"round-{round_index:04d}"
    return f"checkpoints/{name}.safetensors"


def server_state_rel(round_index: int) -> str:
    """The server optimizer's state after ``round_index`` (``run.server_optimizer``)."""
    return f"checkpoints/server-{round_index:04d}.safetensors"


def transcript_rel(round_index: int) -> str:
    """The secure-aggregation transcript of one round."""
    return f"secagg/round-{round_index:04d}.json"


def baseline_rel(name: str) -> str:
    return f"baselines/{name}.json"


def node_dir_rel(institution: int | str) -> str:
    """Where a Flower node's own records are filed for the audit."""
    return f"nodes/{institution}"


# Written once before round 0; every round's record carries their hashes as well, so
# ``securefed audit --verify`` checks them too.
SETUP_FILES = (CONFIG, ENVIRONMENT, PARTITION, TUNING, checkpoint_rel(None))


def vector_digest(vector: np.ndarray) -> bytes:
    """SHA-256 of an adapter vector as float32 bytes: the one adapter-vector hash. Every party
    binds it into the secure-aggregation session id; records carry its hex form."""
    return hashlib.sha256(np.ascontiguousarray(vector, dtype=np.float32).tobytes()).digest()


def vector_hash(vector: np.ndarray) -> str:
    """``vector_digest`` in hex, as metrics records and the audit state it."""
    return vector_digest(vector).hex()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def record_hash(record: dict) -> str:
    """Hash of a metrics record without its own ``record_hash`` field."""
    body = {k: v for k, v in record.items() if k != "record_hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file, fsync it, rename it over ``path``: a crash or power
    loss leaves the old file or the new one, never a torn one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``atomic_write_text`` for bytes. A full disk or a refused write is an ``OutputError``
    naming the file (the old file, if any, stays as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"cannot write {path} ({exc.strerror or exc}); nothing of it was kept"
        ) from None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunFolderError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} is not readable JSON ({exc}); the file is damaged") from None


def check_creatable(path: Path, key: str) -> None:
    """Refuse, before any work and without creating anything, an output folder that cannot
    be made: a file in its place or on its path, or no write permission where it would go."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{key} {path} is a file; allowed: a new or empty folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing}: {os.strerror(errno.ENOTDIR)}"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing}: {os.strerror(errno.EACCES)}"
    if problem is not None:
        raise OutputError(
            f"{key}: cannot create the run folder {path} ({problem}); "
            "allowed: a folder path where you can write"
        )


class RunFolder:
    """Read and write one run's artefacts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.setup_sha256: dict[str, str] = {}  # recorded in state.json; --resume checks them

    @classmethod
    def create(cls, path: str | Path, config_yaml: str, key: str = "--out") -> RunFolder:
        """A new run folder holding the resolved config (``dump_config``), before any work.
        ``key`` names the setting that chose ``path`` in the error when it cannot be made."""
        folder = cls(path)
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.hold()
            if any(p.name != LOCK for p in folder.path.iterdir()):  # a writer that came and went
                folder.release()
                raise RunFolderError(
                    f"{key} {folder.path} exists and is not empty; pick a new folder "
                    f"or continue it with --resume {folder.path}"
                )
            folder.file(CONFIG).write_text(config_yaml)
        except OSError as exc:
            raise OutputError(
                f"{key}: cannot create the run folder {folder.path} ({exc.strerror}); "
                "allowed: a folder path where you can write"
            ) from None
        return folder

    def hold(self) -> None:
        """Take the folder's one-writer lock (``securefed.run.lock``) until ``release``."""
        RunLock(self.path).acquire()

    def release(self) -> None:
        release_folder(self.path)

    # ---- paths -------------------------------------------------------------------------
    def file(self, rel: str) -> Path:
        return self.path / rel

    def checkpoint_rel(self, round_index: int | None) -> str:
        return checkpoint_rel(round_index)

    # ---- the run's fixed records and its resume point ------------------------------------
    def write_setup(
        self,
        environment: dict,
        partition: dict | None,
        initial_vector: np.ndarray,
        spec_hash: str,
    ) -> None:
        """The records written once before round 0 (``config.yaml`` is written on creation)."""
        if partition is not None:
            write_json(self.file(PARTITION), partition)
        write_json(self.file(ENVIRONMENT), environment)
        self.save_adapter(checkpoint_rel(None), initial_vector, spec_hash)
        self.setup_sha256 = self.artefact_hashes(self.present_setup_files())
        self.write_state(None)

    def write_state(self, last_round: int | None) -> None:
        """Mark ``last_round`` finished (``None``: none yet); ``--resume`` continues after it.
        The one write that commits a round (see ``securefed.run.resume``)."""
        next_round = 0 if last_round is None else last_round + 1
        state = {
            "next_round": next_round,
            "checkpoint": checkpoint_rel(last_round),
            "setup_sha256": self.setup_sha256,
        }
        write_json(self.file(STATE), state)

    # ---- adapters ----------------------------------------------------------------------
    def save_adapter(self, rel: str, vector: np.ndarray, spec_hash: str) -> str:
        path = self.file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            save_file(
                {"adapter": np.ascontiguousarray(vector, dtype=np.float32)},
                str(tmp),
                metadata={"vector_spec_hash": spec_hash},
            )
            os.replace(tmp, path)
        except (OSError, SafetensorError) as exc:  # a full disk: the old files stay as they were
            tmp.unlink(missing_ok=True)
            raise OutputError(
                f"cannot write the checkpoint {path} ({exc}); the rounds already recorded are "
                f"intact: free space, then continue with --resume {self.path}"
            ) from None
        return sha256_file(path)

    def save_arrays(self, rel: str, arrays: dict[str, np.ndarray]) -> None:
        """Write named arrays (safetensors, through a temporary name)."""
        tmp = self.file(rel + ".tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        os.replace(tmp, self.file(rel))

    def load_arrays(self, rel: str) -> dict[str, np.ndarray]:
        return load_file(str(self.file(rel)))

    def load_adapter(self, rel: str) -> np.ndarray:
        path = self.file(rel)
        if not path.is_file():
            raise RunFolderError(f"checkpoint {path} is missing")
        return load_file(str(path))["adapter"]

    def save_server_state(self, rel: str, state: dict[str, np.ndarray]) -> None:
        """The server optimizer's arrays (float64), written atomically."""
        atomic_write_bytes(
            self.file(rel), save({k: np.ascontiguousarray(v) for k, v in state.items()})
        )

    def load_server_state(self, rel: str) -> dict[str, np.ndarray]:
        path = self.file(rel)
        if not path.is_file():
            raise RunFolderError(f"the server optimizer's state {path} is missing")
        return load(path.read_bytes())

    # ---- metrics log -------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def read_intact_metrics(self) -> tuple[list[dict], str | None]:
        """The records up to the first that does not parse or whose hash does not match
        (a torn write), and what was dropped (None: nothing)."""
        path = self.file(METRICS)
        lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
        kept: list[dict] = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                intact = record["record_hash"] == record_hash(record)
            except (json.JSONDecodeError, KeyError, TypeError):
                intact = False
            if not intact:
                return kept, f"{METRICS} line {number} of {len(lines)} is torn or altered"
            kept.append(record)
        return kept, None

    def append_metrics(self, record: dict) -> dict:
        """Chain ``record`` to the last one, hash it, append it; returns the stored record."""
        previous = self.read_metrics()
        record = dict(record, prev_hash=previous[-1]["record_hash"] if previous else GENESIS_HASH)
        record["record_hash"] = record_hash(record)
        lines = [json.dumps(r, sort_keys=True, allow_nan=True) for r in [*previous, record]]
        atomic_write_text(self.file(METRICS), "\n".join(lines) + "\n")
        return record

    def truncate_metrics(self, last_round: int) -> None:
        """Drop records after ``last_round`` (a crash between log and state write), and any
        torn record."""
        kept = [r for r in self.read_intact_metrics()[0] if r["round"] <= last_round]
        text = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in kept)
        atomic_write_text(self.file(METRICS), text)

    def artefact_hashes(self, rels: list[str]) -> dict[str, str]:
        return {rel: sha256_file(self.file(rel)) for rel in rels}

    def transcripts(self) -> dict[int, str]:
        """Round index -> the path of that round's secure-aggregation transcript, as written."""
        found = sorted(self.file(transcript_rel(0)).parent.glob("round-*.json"))
        return {int(f.stem.split("-")[1]): transcript_rel(int(f.stem.split("-")[1])) for f in found}

    def present_setup_files(self) -> list[str]:
        """The setup files this run wrote (a Flower server without data has no partition)."""
        return [rel for rel in SETUP_FILES if self.file(rel).is_file()]


@contextmanager
def removed_unless_a_round_commits(folder: RunFolder, existed: bool) -> Iterator[None]:
    """A new run that fails before its first round commits leaves nothing behind: its folder
    goes (``existed``: the empty folder the user named stays, empty). An interrupt (Ctrl-C)
    or a kill keeps it, as the command says, for ``--resume``."""
    try:
        yield
    except Exception:
        state = folder.file(STATE)
        if not state.is_file() or read_json(state).get("next_round", 0) == 0:
            shutil.rmtree(folder.path, ignore_errors=True)
            if existed:
                folder.path.mkdir(exist_ok=True)
        raise
