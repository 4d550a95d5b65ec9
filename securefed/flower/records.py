"""Put the server's run folder and each node's own records together for the audit.

On Flower the server never sees a ledger: each node keeps ``ledger.json`` and a hash-chained
``metrics.jsonl`` of its rounds in its own state folder. An institution hands its folder to
the auditor (not to the server); this module files each one under ``nodes/<id>/`` of the run
folder, writes ``privacy/ledgers.json`` and the ``privacy`` section of ``results.json`` in
the format ``securefed simulate`` uses, and builds the audit.

    python -m securefed.flower.records RUN_DIR AUDIT_DIR 0=/path/to/node-0/run-<id> 1=...
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from securefed.audit import write_audit
from securefed.flower.node import NodeLedger
from securefed.privacy.ledger import PrivacyLedger
from securefed.run.contract import check_shape, read_record
from securefed.run.folder import (
    CONFIG,
    LEDGERS,
    METRICS,
    RESULTS,
    RunFolder,
    node_dir_rel,
    read_json,
    write_json,
)
from securefed.run.lock import RunLock
from securefed.run.records import LedgersFile
from securefed.run.seal import SEAL, reseal, seal_run

NODE_FILES = (CONFIG, NodeLedger.FILE, METRICS, "join.jsonl")


def collect_node_records(
    run_dir: Path, node_dirs: dict[int, Path], audit_dir: Path | None = None
) -> dict:
    """File the nodes' records into ``run_dir``; returns the merged privacy section.

    With ``audit_dir``, also builds the audit there (``securefed.audit.write_audit``).
    """
    run_dir = Path(run_dir)
    with RunLock(run_dir):
        privacy = _file_node_records(run_dir, node_dirs)
    if audit_dir is not None:
        write_audit(run_dir, audit_dir)
    return privacy


def _file_node_records(run_dir: Path, node_dirs: dict[int, Path]) -> dict:
    """``collect_node_records`` under the run folder's lock: refused over a server folder
    that changed since the server sealed it, sealed again once the nodes' records are in."""
    folder = RunFolder(run_dir)
    if folder.file(SEAL).is_file():
        reseal(folder)  # checks the server's seal before anything is filed
    ledgers: dict[str, dict] = {}
    noise: dict[str, float] = {}
    missing: list[int] = []
    dp_enabled, accountant = None, None
    for institution, source in sorted(node_dirs.items()):
        if not (Path(source) / NodeLedger.FILE).is_file():
            missing.append(institution)
            continue
        target = run_dir / node_dir_rel(institution)
        target.mkdir(parents=True, exist_ok=True)
        for name in NODE_FILES:
            if (Path(source) / name).is_file():
                shutil.copy2(Path(source) / name, target / name)
        saved = read_json(target / NodeLedger.FILE)
        check_shape(saved, LedgersFile, target / NodeLedger.FILE)
        ledgers.update(saved["ledgers"])
        noise.update(saved["noise_multipliers"])
        dp_enabled, accountant = saved["dp_enabled"], saved["accountant"]
    # the nodes' part filed into the server's own file (its institution-level ledger stays)
    filed = read_record(run_dir, LEDGERS) or {}
    filed.update(
        dp_enabled=dp_enabled,
        accountant=accountant,
        noise_multipliers=noise,
        ledgers=ledgers,
        source="nodes",
    )
    write_json(run_dir / LEDGERS, filed)
    privacy = {
        "dp_enabled": dp_enabled,
        "accountant_of_record": accountant,
        "source": "nodes",
        "nodes_without_records": missing,
        "clients": {k: PrivacyLedger.from_json(v).report() for k, v in sorted(ledgers.items())},
    }
    results = read_record(run_dir, RESULTS)
    if results is not None:
        results["privacy"] = privacy
        write_json(run_dir / RESULTS, results)
    seal_run(folder)
    return privacy


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or any("=" not in a for a in args[2:]):
        print("usage: " + __doc__.strip().splitlines()[-1].strip())
        return 2
    nodes = {int(k): Path(v) for k, v in (a.split("=", 1) for a in args[2:])}
    collect_node_records(Path(args[0]), nodes, audit_dir=Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
