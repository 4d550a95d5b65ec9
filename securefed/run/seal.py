"""The last links of a run's chain: the finished run's files, then each audit built from it.

``metrics.jsonl`` chains the rounds. What a run writes after its last round (results,
baselines, energy, warnings, canaries) and the audit built from it were bound by nothing, so
a consistent edit of the centralized baseline in both files that hold it, or of a flag in
``audit.json``, verified. Two more records close that:

``seal.json``     written by the run's writer when it ends: the SHA-256 of every file in the
                  run folder, chained to the metrics chain head (``prev_hash``).
``audits.json``   one entry per audit folder built from the run (keyed by its path relative
                  to the run folder): the SHA-256 of each of its files, chained to the seal.

``securefed audit --verify`` checks both and rebuilds every bound audit from the records
(``securefed.audit.bound``). A folder rewritten consistently from scratch, seal included,
still verifies: keep the chain head somewhere the run's operator cannot change.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from securefed.errors import RunFolderError
from securefed.run.folder import (
    GENESIS_HASH,
    RunFolder,
    canonical_json,
    read_json,
    sha256_file,
    write_json,
)
from securefed.run.lock import LOCK, RunLock

SEAL = "seal.json"
AUDITS = "audits.json"
UNSEALED = (SEAL, AUDITS, LOCK)


def _hash(body: dict) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def sealable_files(run_dir: Path) -> list[str]:
    """Every file of the run folder the seal binds: all but the seal, the audit bindings, the
    lock and temporary files."""
    found = (p for p in Path(run_dir).rglob("*") if p.is_file())
    rels = (p.relative_to(run_dir).as_posix() for p in found)
    return sorted(r for r in rels if r not in UNSEALED and not r.endswith(".tmp"))


def chain_head(folder: RunFolder) -> str:
    metrics = folder.read_metrics()
    return metrics[-1]["record_hash"] if metrics else GENESIS_HASH


def seal_run(folder: RunFolder) -> dict:
    """Write ``seal.json`` over the folder's files as they are now; returns it."""
    body = {
        "prev_hash": chain_head(folder),
        "files": folder.artefact_hashes(sealable_files(folder.path)),
    }
    seal = {**body, "record_hash": _hash(body)}
    write_json(folder.file(SEAL), seal)
    return seal


def seal_mismatches(run_dir: Path) -> list[tuple[str, str, object, object]]:
    """(check, where, recorded, found) for every way the folder differs from its seal;
    ``[]`` when it matches. Raises nothing: a missing seal is a mismatch too."""
    path = Path(run_dir) / SEAL
    if not path.is_file():
        return [("finished run file", SEAL, "present", "missing")]
    seal = read_json(path)
    body = {k: v for k, v in seal.items() if k != "record_hash"}
    out = []
    if seal.get("record_hash") != _hash(body):
        out.append(("seal hash", f"{SEAL} record_hash", seal.get("record_hash"), _hash(body)))
    head = chain_head(RunFolder(run_dir))
    if seal.get("prev_hash") != head:
        out.append(
            ("seal chained to the last round", f"{SEAL} prev_hash", seal.get("prev_hash"), head)
        )
    sealed = seal.get("files") or {}
    for rel in sorted(set(sealed) | set(sealable_files(Path(run_dir)))):
        file = Path(run_dir) / rel
        found = sha256_file(file) if file.is_file() else "missing"
        if sealed.get(rel, "not sealed") != found:
            out.append(("sealed file sha256", rel, sealed.get(rel, "not sealed"), found))
    return out


def reseal(folder: RunFolder) -> dict:
    """Seal again after a legitimate second writer (the Flower records collector) added
    files: refused when the folder no longer matches its present seal."""
    if folder.file(SEAL).is_file():
        changed = [where for _, where, _, _ in seal_mismatches(folder.path)]
        if changed:
            raise RunFolderError(
                f"{folder.path} changed since it was sealed ({', '.join(changed[:5])}); "
                "it is not sealed again over an edit"
            )
    return seal_run(folder)


def audit_key(run_dir: Path, audit_dir: Path) -> str:
    """An audit folder's key in ``audits.json``: its path relative to the run folder."""
    return Path(os.path.relpath(Path(audit_dir).resolve(), Path(run_dir).resolve())).as_posix()


def audit_files(audit_dir: Path) -> dict[str, str]:
    """The SHA-256 of every file of an audit folder (audit.json, .md, .html, plots)."""
    files = (p for p in Path(audit_dir).rglob("*") if p.is_file() and p.suffix != ".tmp")
    return {p.relative_to(audit_dir).as_posix(): sha256_file(p) for p in sorted(files)}


def bind_audit(run_dir: Path, audit_dir: Path) -> None:
    """Record the audit folder's file hashes in the run's ``audits.json``, chained to the
    seal (a run without a seal yet, one still running or crashed, is chained to its head)."""
    folder = RunFolder(run_dir)
    with RunLock(folder.path):
        body = {"prev_hash": audit_link(folder.path), "files": audit_files(audit_dir)}
        bound = read_audits(run_dir)
        bound[audit_key(run_dir, audit_dir)] = {**body, "record_hash": _hash(body)}
        write_json(folder.file(AUDITS), dict(sorted(bound.items())))


def audit_link(run_dir: Path) -> str:
    """What an audit of the run is chained to: the seal's hash, or (a run not finished) the
    metrics chain head."""
    folder = RunFolder(run_dir)
    if folder.file(SEAL).is_file():
        return read_json(folder.file(SEAL)).get("record_hash")
    return chain_head(folder)


def read_audits(run_dir: Path) -> dict[str, dict]:
    path = Path(run_dir) / AUDITS
    return read_json(path) if path.is_file() else {}


def audit_entry_hash(entry: dict) -> str:
    """The hash an ``audits.json`` entry must carry."""
    return _hash({k: v for k, v in entry.items() if k != "record_hash"})
