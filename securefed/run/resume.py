"""Continuing a run (``--resume``): where it stopped, and that it is still the run it was.

A round's writes, in order: its checkpoint, its secure-aggregation transcript,
``privacy/ledgers.json``, its ``metrics.jsonl`` record, then ``state.json``. Each is atomic
(``folder.atomic_write_text``), and the last one commits the round: round r is recorded once
``state.json`` says ``next_round > r``. A kill before that leaves r uncommitted, and resuming
undoes exactly what r wrote:

- its checkpoint and transcript are new files that its rerun overwrites;
- its metrics record is dropped (``RunFolder.truncate_metrics``);
- its ledger events are dropped when the ledgers are restored (``privacy_before``): in one
  process an uncommitted round's outputs never left the run folder, and its rerun replaces
  them, so charging the institutions for it twice would overstate the budget they spent and
  stop them early (the resumed run would then differ from the uninterrupted one).

A metrics record that does not parse or whose hash does not match (a write that never reached
the disk whole) rolls the resume point back to before it; a damaged ``state.json`` is rebuilt
from the intact records. The setup files (config, environment, partition, initial adapter) are
hashed when the run starts; a run whose files no longer match is refused, so one run folder
never holds two configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from securefed.errors import RunFolderError
from securefed.run.contract import read_record
from securefed.run.folder import (
    CONFIG,
    LEDGERS,
    SETUP_FILES,
    STATE,
    RunFolder,
    checkpoint_rel,
    read_json,
    sha256_file,
)
from securefed.run.seal import SEAL


@dataclass(frozen=True)
class ResumePoint:
    """The first round to train, the adapter it starts from, and what was repaired."""

    next_round: int
    checkpoint: str
    repaired: list[str]


def resume_point(folder: RunFolder) -> ResumePoint:
    """Where ``folder``'s run continues; ``RunFolderError`` if it cannot, in one line."""
    check_run_folder(folder)
    records, torn = folder.read_intact_metrics()
    after_records = records[-1]["round"] + 1 if records else 0
    repaired = []
    try:
        state = read_json(folder.file(STATE))
        next_round = int(state["next_round"])
        recorded = dict(state.get("setup_sha256") or {})
    except (RunFolderError, KeyError, TypeError, ValueError) as exc:
        if not records:
            raise RunFolderError(
                f"--resume {folder.path}: the run stopped before its first round was recorded "
                f"({exc}); nothing is lost by starting it again in a new folder"
            ) from None
        repaired.append(f"{STATE} unreadable; continuing after the last intact metrics record")
        next_round, recorded = after_records, {}
    if torn is not None:
        repaired.append(f"{torn}: dropped, and that round is trained again")
    if not recorded and records:  # state.json written before setup hashes were recorded
        recorded = {k: v for k, v in records[-1]["artefacts"].items() if k in SETUP_FILES}
    _check_setup(folder, recorded)
    folder.setup_sha256 = recorded
    next_round = min(next_round, after_records)
    _check_committed(folder, [r for r in records if r["round"] < next_round], next_round)
    previous = checkpoint_rel(next_round - 1 if next_round > 0 else None)
    return ResumePoint(next_round, previous, repaired)


def check_run_folder(folder: RunFolder) -> None:
    """``RunFolderError`` in one line unless ``folder`` holds a run's ``config.yaml``."""
    if not folder.file(CONFIG).is_file():
        missing = folder.file(CONFIG)
        raise RunFolderError(
            f"--resume {folder.path}: not a run folder ({missing} is missing); "
            "allowed: a run folder with an existing YAML file config.yaml"
        )


def _check_setup(folder: RunFolder, recorded: dict[str, str]) -> None:
    for rel, expected in recorded.items():
        path = folder.file(rel)
        if not path.is_file() or sha256_file(path) != expected:
            raise RunFolderError(
                f"--resume {folder.path}: {rel} no longer matches the file this run started "
                "with (SHA-256 in state.json); a run folder holds one run: start a new run "
                "for the changed setting"
            )


def _check_committed(folder: RunFolder, committed: list[dict], next_round: int) -> None:
    """Every artefact the committed rounds recorded (checkpoints, transcripts, ledgers) must
    still be the file the chain hashed: a swapped checkpoint would silently continue another
    model. ``privacy/ledgers.json`` may differ only by the uncommitted round's rewrite (it
    then holds events of that round, which ``privacy_before`` drops)."""
    latest: dict[str, str] = {}
    for record in committed:
        latest.update(record["artefacts"])
    for rel, expected in sorted(latest.items()):
        path = folder.file(rel)
        if rel in SETUP_FILES or (path.is_file() and sha256_file(path) == expected):
            continue
        if rel == LEDGERS and path.is_file() and _rewritten_by_round(folder, next_round):
            continue
        state = (
            "is missing" if not path.is_file() else "no longer matches its SHA-256 in metrics.jsonl"
        )
        raise RunFolderError(
            f"--resume {folder.path}: {rel} {state}; a changed record is not continued "
            f"(securefed audit --verify {folder.path} lists every difference)"
        )


def _rewritten_by_round(folder: RunFolder, next_round: int) -> bool:
    ledgers = read_record(folder.path, LEDGERS)["ledgers"]
    rounds = [e["round_index"] for obj in ledgers.values() for e in obj["events"]]
    return any(r >= next_round for r in rounds)


def finished(folder: RunFolder) -> bool:
    """Whether the run sealed its records (its last write): ``--resume`` has nothing to do.
    A run killed before its seal continues: its rounds are all there, its end is rerun."""
    return folder.file(SEAL).is_file()


def finished_message(folder: RunFolder) -> str:
    rounds = len(folder.read_metrics())
    return (
        f"--resume {folder.path}: the run finished ({rounds} round(s) recorded, {SEAL} "
        f"written); nothing to resume, nothing was written (securefed audit --verify "
        f"{folder.path} checks it)"
    )


def privacy_before(saved_ledgers: dict, next_round: int) -> dict:
    """``privacy/ledgers.json`` without the events of rounds from ``next_round`` on (the
    uncommitted round's; see the module docstring): the institutions' ledgers and the
    federation's institution-level one alike."""

    def before(ledger: dict) -> dict:
        return {**ledger, "events": [e for e in ledger["events"] if e["round_index"] < next_round]}

    out = {
        **saved_ledgers,
        "ledgers": {key: before(obj) for key, obj in saved_ledgers["ledgers"].items()},
    }
    if "institution" in saved_ledgers:
        institution = saved_ledgers["institution"]
        out["institution"] = {**institution, "ledger": before(institution["ledger"])}
    return out
