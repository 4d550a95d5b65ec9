"""The audit bound to its run: ``audit --verify`` rebuilds every flag, table, plot and the
HTML from the records and compares them with the files, naming the file and the field.

Run folder: each audit folder ``audits.json`` binds (``securefed.run.seal``) is checked
against its recorded hashes (an edited file, or a file added), then rebuilt from the run's
records and compared field by field (``audit.json``) and line by line (Markdown, HTML).
Audit folder alone: its flags and verdict are recomputed from its own sections, and its
Markdown, HTML and plots rendered again from its ``audit.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from securefed.audit.empirical_report import verify_figures
from securefed.audit.epsilons import check_audit_epsilons
from securefed.audit.institution import check_audit_institution
from securefed.audit.outputs import AUDIT_RECORD, audit_outputs
from securefed.audit.report import build_audit, flags, verdict
from securefed.audit.verification import Verification
from securefed.audit.verify import verify_records
from securefed.errors import RunFolderError
from securefed.run.folder import CONFIG, read_json, sha256_file
from securefed.run.seal import AUDITS, audit_entry_hash, audit_files, audit_link, read_audits

MAX_FIELDS_NAMED = 20  # differences listed per audit file; the rest are counted


def verify_run(run_dir: str | Path) -> Verification:
    """``verify_records``, then every audit bound to the run (``audits.json``): its files'
    hashes, and every figure, flag, table, plot and the HTML rebuilt from the records."""
    records = verify_records(run_dir)
    out = Verification(records.checks, list(records.mismatches), list(records.notes))
    check_bound_audits(Path(run_dir), records, out)
    return out


def is_audit_folder(path: str | Path) -> bool:
    """An audit folder (``audit.json``, no run folder's ``config.yaml``) rather than a run."""
    return (Path(path) / AUDIT_RECORD).is_file() and not (Path(path) / CONFIG).is_file()


def verify_audit(audit_dir: str | Path) -> Verification:
    """Recompute every epsilon an audit folder's ``audit.json`` shows from its own events,
    its flags and verdict from its sections, and its Markdown, HTML and plots from it."""
    path = Path(audit_dir) / AUDIT_RECORD
    try:
        audit = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path} cannot be read as an audit record: {exc}") from None
    out = Verification()
    check_audit_epsilons(audit, out)
    empirical = audit.get("empirical") or {}
    if "scores" in empirical:
        problems = verify_figures(empirical, empirical)
        out.expect("empirical lower bound and estimate", "audit.json empirical", problems, [])
    check_audit_institution(audit, out)
    verify_audit_folder(Path(audit_dir), out)
    out.notes.append(
        "an audit folder alone is checked against its own record; give the run folder to "
        "check the record against the run"
    )
    return out


def check_bound_audits(run_dir: Path, records: Verification, out: Verification) -> None:
    """Every audit bound in the run's ``audits.json``: its hashes, and its rebuild."""
    for key, entry in read_audits(run_dir).items():
        out.expect(
            "audit binding hash",
            f"{AUDITS} {key} record_hash",
            entry.get("record_hash"),
            audit_entry_hash(entry),
        )
        out.expect(
            "audit chained to the seal",
            f"{AUDITS} {key} prev_hash",
            entry.get("prev_hash"),
            audit_link(Path(run_dir)),
        )
        audit_dir = Path(run_dir) / key
        if not (audit_dir / AUDIT_RECORD).is_file():
            out.notes.append(f"the audit folder {key} bound in {AUDITS} is not here: not checked")
            continue
        recorded = entry.get("files") or {}
        for rel in sorted(set(recorded) | set(audit_files(audit_dir))):
            file = audit_dir / rel
            found = sha256_file(file) if file.is_file() else "missing"
            out.expect("audit file sha256", f"{key}/{rel}", recorded.get(rel, "not bound"), found)
        stored = read_json(audit_dir / AUDIT_RECORD)
        rebuilt = build_audit(
            run_dir, verification=records, threat_model_record=stored.get("threat_model")
        )
        # The run folder's name is where it lies now, not a fact of the run: a copy verifies.
        rebuilt["run"]["folder"] = (stored.get("run") or {}).get("folder")
        compare_with_files(rebuilt, audit_dir, key, out)


def verify_audit_folder(audit_dir: Path, out: Verification) -> None:
    """An audit folder alone: flags, verdict and renderings recomputed from its record."""
    audit = read_json(Path(audit_dir) / AUDIT_RECORD)
    recomputed = {**audit, "flags": flags(audit)}
    recomputed["verdict"] = verdict(recomputed)
    compare_with_files(recomputed, Path(audit_dir), Path(audit_dir).name, out)


def compare_with_files(audit: dict, audit_dir: Path, label: str, out: Verification) -> None:
    """The audit folder's files against what ``audit`` renders to."""
    stored = read_json(audit_dir / AUDIT_RECORD)
    expected = json.loads(json.dumps(audit, allow_nan=False))
    differences = list(_differences(stored, expected, ""))
    for path, recorded, found in differences[:MAX_FIELDS_NAMED]:
        out.expect("audit figure recomputed", f"{label}/{AUDIT_RECORD} {path}", recorded, found)
    if len(differences) > MAX_FIELDS_NAMED:
        out.notes.append(f"{label}/{AUDIT_RECORD}: {len(differences)} fields differ in all")
    out.checks += 1
    files, absent = audit_outputs(audit)
    for rel, data in files.items():
        if rel == AUDIT_RECORD:
            continue
        file = audit_dir / rel
        now = file.read_bytes() if file.is_file() else None
        if now is None:
            out.expect(
                "audit file rendered from the record", f"{label}/{rel}", "present", "missing"
            )
        elif rel.endswith(".png"):
            digests = (hashlib.sha256(now).hexdigest(), hashlib.sha256(data).hexdigest())
            out.expect("audit plot rendered from the record", f"{label}/{rel}", *digests)
        else:
            where, recorded, found = _first_line_difference(now, data)
            out.expect(
                "audit text rendered from the record", f"{label}/{rel}{where}", recorded, found
            )
    for rel in absent:
        if (audit_dir / rel).is_file():
            out.expect("audit plot rendered from the record", f"{label}/{rel}", "present", "absent")


def _differences(recorded: object, found: object, path: str):
    """(field path, recorded, found) for every leaf where the two records differ."""
    if isinstance(recorded, dict) and isinstance(found, dict):
        for key in list(recorded) + [k for k in found if k not in recorded]:
            yield from _differences(
                recorded.get(key, "absent"), found.get(key, "absent"), f"{path}.{key}".lstrip(".")
            )
    elif isinstance(recorded, list) and isinstance(found, list) and len(recorded) == len(found):
        for i, (a, b) in enumerate(zip(recorded, found, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif recorded != found:
        yield path or "(whole record)", recorded, found


def _first_line_difference(now: bytes, expected: bytes) -> tuple[str, str, str]:
    """(" line N", the line in the file, the line rendered) at the first difference;
    ("", "", "") when the two are equal."""
    if now == expected:
        return "", "", ""
    a, b = now.decode(errors="replace").splitlines(), expected.decode().splitlines()
    for number, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f" line {number}", x, y
    shorter = min(len(a), len(b)) + 1
    return (
        f" line {shorter}",
        (a[shorter - 1 : shorter] or ["(end)"])[0],
        (b[shorter - 1 : shorter] or ["(end)"])[0],
    )
