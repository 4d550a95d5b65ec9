"""The audit is bound to its run: every edit of a fact, in the run or in the audit, fails verify.

Each row edits one copy of a finished run and its audit (run/ and audit/ side by side, the
audit bound in run/audits.json) the way someone wanting a better-looking audit would, often
consistently in every file that holds the figure; ``audit --verify`` on the run folder must
fail, naming the file (and, in audit.json, the field). The untouched copy must verify.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from securefed.audit import verify_audit, verify_run, write_audit
from securefed.run.folder import (
    CANARIES,
    ENERGY,
    METRICS,
    RESULTS,
    STATE,
    WARNINGS,
    baseline_rel,
    checkpoint_rel,
    record_hash,
    transcript_rel,
)
from securefed.run.seal import AUDITS, SEAL


@pytest.fixture(scope="module")
def bound(private_run, plain_run, canary_run, tmp_path_factory) -> dict[str, Path]:
    """name -> a folder holding run/ (a copy of that run) and audit/ (its audit, bound)."""
    base = tmp_path_factory.mktemp("bound")
    roots = {}
    for name, run in (("private", private_run), ("plain", plain_run), ("canaries", canary_run)):
        root = base / name
        shutil.copytree(run, root / "run")
        (root / "run" / AUDITS).unlink(missing_ok=True)  # audits of the original, elsewhere
        write_audit(root / "run", root / "audit")
        roots[name] = root
    return roots


def _json(path: Path, edit: Callable[[dict], object]) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record, indent=2))


def _text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def _centralized_baseline(run: Path, audit: Path) -> None:
    """Rewritten consistently in both files that hold it."""

    def better(block: dict) -> None:
        block["pooled"]["accuracy"] = 0.99

    _json(run / baseline_rel("centralized"), better)
    _json(run / RESULTS, lambda r: better(r["centralized"]))


def _delete_flag(code: str) -> Callable[[Path, Path], None]:
    def edit(run: Path, audit: Path) -> None:
        _json(audit / "audit.json", lambda a: a.__setitem__("flags", _without(a["flags"], code)))

    return edit


def _without(flags: list[dict], code: str) -> list[dict]:
    assert code in [f["code"] for f in flags]
    return [f for f in flags if f["code"] != code]


def _swap_checkpoints(run: Path, audit: Path) -> None:
    first, last = run / checkpoint_rel(0), run / checkpoint_rel(1)
    data = first.read_bytes()
    first.write_bytes(last.read_bytes())
    last.write_bytes(data)


def _energy_consistently(run: Path, audit: Path) -> None:
    _json(run / ENERGY, lambda e: e["total"].__setitem__("wall_s", 13.5))
    _json(run / RESULTS, lambda r: r["energy"].__setitem__("wall_s", 13.5))


def _second_writer_record(run: Path, audit: Path) -> None:
    """What two writers on one folder left: one more record, correctly chained."""
    lines = (run / METRICS).read_text().splitlines()
    last = json.loads(lines[-1])
    extra = {**last, "round": last["round"] + 1, "prev_hash": last["record_hash"]}
    extra["record_hash"] = record_hash(extra)
    (run / METRICS).write_text("\n".join([*lines, json.dumps(extra, sort_keys=True)]) + "\n")


def _audit_figure(run: Path, audit: Path) -> None:
    _json(audit / "audit.json", lambda a: a["accuracy"]["pooled"]["federated"].update(accuracy=0.9))


def _reseal_over_edit(run: Path, audit: Path) -> None:
    """Edit results.json and update its hash in seal.json (record hash left)."""
    _json(run / RESULTS, lambda r: r["federated"]["pooled"].update(accuracy=0.9))
    from securefed.run.folder import sha256_file

    _json(run / SEAL, lambda s: s["files"].__setitem__(RESULTS, sha256_file(run / RESULTS)))


def _audit_and_its_binding(run: Path, audit: Path) -> None:
    """A flag deleted, and audits.json rewritten to bind the edited file (hash recomputed)."""
    from securefed.run.folder import sha256_file
    from securefed.run.seal import audit_entry_hash

    _delete_flag("dp_off")(run, audit)

    def rebind(bound: dict) -> None:
        (entry,) = bound.values()
        entry["files"]["audit.json"] = sha256_file(audit / "audit.json")
        entry["record_hash"] = audit_entry_hash(entry)

    _json(run / AUDITS, rebind)


EDITS: dict[str, tuple[str, Callable[[Path, Path], None], str]] = {
    # the seven of the issue
    "baseline in both files": ("private", _centralized_baseline, "baselines/centralized.json"),
    "dp_off flag deleted": ("plain", _delete_flag("dp_off"), "audit.json flags"),
    "DP OFF edited out of the HTML": (
        "plain",
        lambda run, audit: _text(audit / "audit.html", "DIFFERENTIAL PRIVACY OFF", "DP"),
        "audit.html",
    ),
    "second writer's record": ("private", _second_writer_record, METRICS),
    "checkpoints swapped": ("private", _swap_checkpoints, checkpoint_rel(0)),
    "energy.json deleted": ("private", lambda run, audit: (run / ENERGY).unlink(), ENERGY),
    "energy rewritten consistently": ("private", _energy_consistently, ENERGY),
    # flags, verdict, HTML, Markdown, plots
    "critical flag downgraded": (
        "plain",
        lambda run, audit: _json(
            audit / "audit.json", lambda a: a["flags"][0].__setitem__("severity", "caveat")
        ),
        "audit.json flags[0].severity",
    ),
    "flag deleted and its binding rewritten": ("plain", _audit_and_its_binding, "flags"),
    "caveat deleted": ("private", _delete_flag("synthetic_data"), "audit.json flags"),
    "verdict edited": (
        "private",
        lambda run, audit: _json(
            audit / "audit.json", lambda a: a.__setitem__("verdict", "all fine; verified")
        ),
        "audit.json verdict",
    ),
    "verdict edited in the Markdown": (
        "private",
        lambda run, audit: _text(audit / "audit.md", "**Verdict:** ", "**Verdict:** fine; "),
        "audit.md",
    ),
    "accuracy figure in audit.json": ("private", _audit_figure, "accuracy.pooled.federated"),
    "plot swapped": (
        "private",
        lambda run, audit: shutil.copy(
            audit / "plots" / "epsilon_by_round.png", audit / "plots" / "accuracy.png"
        ),
        "plots/accuracy.png",
    ),
    "plot deleted": (
        "private",
        lambda run, audit: (audit / "plots" / "accuracy.png").unlink(),
        "plots/accuracy.png",
    ),
    "file added to the audit": (
        "private",
        lambda run, audit: (audit / "summary.html").write_text("<p>all fine</p>"),
        "summary.html",
    ),
    # the run's other records
    "results figure": (
        "private",
        lambda run, audit: _json(run / RESULTS, lambda r: r["timing"].update(run_wall_s=1.0)),
        RESULTS,
    ),
    "transcript edited": (
        "private",
        lambda run, audit: _json(run / transcript_rel(0), lambda t: t.update(threshold=1)),
        transcript_rel(0),
    ),
    "transcript deleted": (
        "private",
        lambda run, audit: (run / transcript_rel(0)).unlink(),
        transcript_rel(0),
    ),
    "warning removed": (
        "private",
        lambda run, audit: _json(run / WARNINGS, lambda w: w.pop()),
        WARNINGS,
    ),
    "state rewound": (
        "private",
        lambda run, audit: _json(run / STATE, lambda s: s.update(next_round=1)),
        STATE,
    ),
    "seal rewritten over an edit": ("private", _reseal_over_edit, SEAL),
    "seal deleted": ("private", lambda run, audit: (run / SEAL).unlink(), SEAL),
    "canary score": (
        "canaries",
        lambda run, audit: _json(run / CANARIES, lambda c: c["scores"].__setitem__(0, 1e3)),
        CANARIES,
    ),
    "canaries deleted": ("canaries", lambda run, audit: (run / CANARIES).unlink(), CANARIES),
}


@pytest.mark.parametrize("name", ["private", "plain", "canaries"])
def test_the_untouched_run_and_its_audit_verify(bound, name, tmp_path):
    root = shutil.copytree(bound[name], tmp_path / "copy")
    result = verify_run(root / "run")
    assert result.ok, result.mismatches
    assert not [n for n in result.notes if "not here" in n]  # the audit was rebuilt
    assert verify_audit(root / "audit").ok


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_edit_fails_verify_naming_the_file(bound, edit, tmp_path):
    run_name, change, named = EDITS[edit]
    root = shutil.copytree(bound[run_name], tmp_path / "copy")
    change(root / "run", root / "audit")
    result = verify_run(root / "run")
    assert not result.ok
    assert any(named in m.where for m in result.mismatches), [m.where for m in result.mismatches]


def test_the_table_holds_twenty_edits():
    assert len(EDITS) >= 20


def test_an_audit_folder_alone_fails_on_an_inconsistent_edit(bound, tmp_path):
    root = shutil.copytree(bound["plain"], tmp_path / "copy")
    _text(root / "audit" / "audit.html", "DIFFERENTIAL PRIVACY OFF", "DP")
    wheres = [m.where for m in verify_audit(root / "audit").mismatches]
    assert any(w.startswith("audit/audit.html line") for w in wheres), wheres


def test_the_verdict_comes_first_and_says_what_ran(bound):
    audit = json.loads((bound["private"] / "audit" / "audit.json").read_text())
    assert audit["verdict"].startswith("federated accuracy ")
    assert "95% CI" in audit["verdict"] and audit["verdict"].endswith("verified")
    assert "epsilon <= " in audit["verdict"]
    markdown = (bound["private"] / "audit" / "audit.md").read_text().splitlines()
    assert markdown[2] == f"**Verdict:** {audit['verdict']}."
    plain = json.loads((bound["plain"] / "audit" / "audit.json").read_text())["verdict"]
    assert "DP OFF" in plain and "NO secure aggregation" in plain
