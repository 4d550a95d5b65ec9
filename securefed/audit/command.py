"""``securefed audit RUN_DIR [--out DIR] [--verify]`` and ``write_audit`` (end of every run).

audit.json        the record (schema in audits/README.md)
audit.md          Markdown view; plots beside it in plots/*.png
audit.html        one self-contained page (plots inlined)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from securefed.audit.bound import is_audit_folder, verify_audit, verify_run
from securefed.audit.outputs import AUDIT_RECORD, audit_outputs
from securefed.audit.report import CRITICAL, build_audit
from securefed.audit.verification import Verification
from securefed.errors import OutputError, RunFolderError
from securefed.run.folder import atomic_write_bytes, read_json
from securefed.run.lock import RunLock
from securefed.run.seal import bind_audit

EXIT_MISMATCH = 1
AUDITS_DIR = Path("audits")


def default_out_dir(run_dir: Path) -> Path:
    """``audits/<run-folder-name>/`` under the current directory."""
    return AUDITS_DIR / Path(run_dir).resolve().name


def write_audit(run_dir: Path, out_dir: Path | None = None) -> Path:
    """Build the audit of ``run_dir``; write JSON, Markdown, HTML and plots; bind their hashes
    into the run's ``audits.json`` (``securefed.run.seal``); return the folder. Holds the run
    folder's lock meanwhile, so no writer changes the run under the audit."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(run_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"audit folder {out} is a file; allowed: a folder (new or an audit's)")
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a run folder (no such directory)")
    with RunLock(run_dir):
        audit = build_audit(run_dir)
        files, absent = audit_outputs(audit)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the audit folder {out} ({exc.strerror}); allowed: a folder path "
                "where you can write (securefed audit RUN_DIR --out DIR)"
            ) from None
        for rel in absent:
            if (out / rel).is_file():
                (out / rel).unlink()  # a stale image from an earlier build contradicts the record
        for rel, data in files.items():
            atomic_write_bytes(out / rel, data)
        bind_audit(run_dir, out)
    return out


def add_audit_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``securefed audit`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "audit",
        help="build (or --verify) the audit of a run folder, without training",
        description="Build the audit of a run folder from its files alone, or verify them.",
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a run folder written by simulate (or, with --verify, an audit folder)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="where to write the audit (default: audits/<run-folder-name>/)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="recompute every hash and epsilon, and rebuild every audit bound to the run "
        "(flags, verdict, tables, plots, HTML) from its records; exit 1 on any mismatch, "
        "naming the file and field (given an audit folder instead of a run: its epsilons, "
        "flags, verdict and renderings from its own audit.json)",
    )
    parser.set_defaults(func=run_audit_command)
    return parser


def run_audit_command(args: argparse.Namespace, console: Console) -> int:
    run_dir = Path(args.run_dir)
    if args.verify:
        result = verify_audit(run_dir) if is_audit_folder(run_dir) else verify_run(run_dir)
        print_verification(result, run_dir, console)
        return 0 if result.ok else EXIT_MISMATCH
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise OutputError(f"--out {args.out} is a file; allowed: a folder (new, or an audit's)")
    out = write_audit(run_dir, Path(args.out) if args.out else None)
    audit = read_json(out / AUDIT_RECORD)
    for flag in audit["flags"]:
        colour = "red" if flag["severity"] == CRITICAL else "yellow"
        console.print(
            f"[{colour}]{flag['severity'].upper()}[/{colour}] {flag['message']}", highlight=False
        )
    console.print(f"audit written to {out}/ (audit.json, audit.md, audit.html)")
    return 0 if audit["integrity"]["verified"] else EXIT_MISMATCH


def print_verification(result: Verification, run_dir: Path, console: Console) -> None:
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    if result.ok:
        console.print(f"[green]verified[/green]: {result.checks} checks on {run_dir}, no mismatch")
        return
    table = Table(title=f"{len(result.mismatches)} mismatch(es) in {run_dir}")
    for column in ("check", "where", "recorded", "found now"):
        table.add_column(column, overflow="fold")
    for m in result.mismatches:
        table.add_row(m.check, m.where, m.recorded, m.found)
    console.print(table)
    console.print(
        f"[red]verification failed[/red]: {len(result.mismatches)} of {result.checks} checks"
    )
