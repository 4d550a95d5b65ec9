"""Three institutions on this machine, over Flower with TLS and node authentication.

    python deploy/localhost.py                       # the embedded default, 3 institutions
    python deploy/localhost.py --set training.rounds=2 --set privacy.dp.enabled=true
    python deploy/localhost.py --simulation          # on Flower's simulation engine (ray)

What it does, each step a separate process as it would be across machines:

1. makes a private CA, a TLS certificate for the SuperLink and one authentication key per
   institution (``securefed.flower.certs``);
2. starts ``flower-superlink`` with TLS and ``--enable-supernode-auth``;
3. registers each institution's public key (``flwr supernode register``);
4. starts one ``flower-supernode`` per institution (TLS, its private key, its partition id
   and its own state folder for the privacy ledger and records);
5. launches the run (``flwr run deploy/app``), waits for it, and stops everything;
6. gathers the server's run folder and each node's records into one audit folder, and
   prints what ``securefed simulate`` prints: the results table, the privacy lines, the
   audit's path and its verdict.

Each SuperNode runs warm (``securefed.flower.warm_node``): one long-running ClientApp
process keeps the model and data loaded across messages and rounds. ``--simulation`` runs
the same apps on Flower's simulation engine instead (needs ``flwr[simulation]``); each
simulated node pins its settings from its own file (``securefed.flower.localhost``).

Identities are on: each institution gets an Ed25519 identity key and every node pins the
roster of all of them (``securefed.flower.localhost``), so secure aggregation runs against a
server that may lie in its lists (adversary ``semi_malicious``: signed messages, consistency
check). The audit states the adversary from the nodes' own join records, not the server's.

Everything lands in ``--workdir`` (default ``runs/flower-localhost-<time>``): ``run/`` is
the server's run folder (with the nodes' records filed under ``run/nodes/``), ``audit/`` the
audit built from both, ``node-<id>/`` each node's own state folder, ``*.log`` every
component's log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from rich.console import Console

from securefed.cli import EXIT_USER_ERROR
from securefed.config import load_config
from securefed.errors import SecurefedError
from securefed.flower.localhost import LocalFederation, LocalSimulation
from securefed.flower.node_security import pinned_node_config
from securefed.flower.records import collect_node_records
from securefed.run.folder import AUDIT_RECORD, RESULTS, check_creatable, read_json
from securefed.run.summary import print_results


def localhost_overrides(institutions: int, sets: list[str]) -> list[str]:
    """One partition per institution, every institution in every round, then the user's
    ``--set`` (which may change either)."""
    return [
        f"partition.num_clients={institutions}",
        f"training.clients_per_round={institutions}",
        *sets,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="securefed YAML (default: embedded default)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as in `securefed simulate` (repeatable)",
    )
    parser.add_argument("--institutions", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the whole run")
    parser.add_argument(
        "--simulation",
        action="store_true",
        help="on Flower's simulation engine (one SuperLink, nodes in Ray actors; needs "
        "flwr[simulation]) instead of a SuperNode process per institution",
    )
    args = parser.parse_args(argv)
    overrides = localhost_overrides(args.institutions, args.set)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = (args.workdir or Path("runs") / f"flower-localhost-{stamp}").resolve()
    try:
        cfg = load_config(args.config, overrides)  # fail here, not inside the ServerApp
        check_creatable(workdir, "--workdir")  # a file there: one line, before anything starts
        return _run(args, cfg, overrides, workdir)
    except SecurefedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


def _run(args: argparse.Namespace, cfg, overrides: list[str], workdir: Path) -> int:
    """Start the federation, run, stop it, gather the records and build the audit."""
    run_dir = workdir / "run"
    institutions = list(range(cfg.partition.num_clients))
    started = time.perf_counter()
    pinned = {i: pinned_node_config(cfg) for i in institutions}  # each operator agrees to cfg
    runtime = LocalSimulation if args.simulation else LocalFederation
    with runtime(workdir, institutions, node_config=pinned) as fed:
        nodes = "simulated nodes" if args.simulation else "SuperNodes (TLS)"
        print(f"SuperLink on 127.0.0.1:{fed.port}, {len(institutions)} {nodes}; logs in {workdir}")
        run_id = fed.launch(
            {
                "config": str(Path(args.config).resolve()) if args.config else "",
                "overrides": "; ".join(overrides),
                "run-dir": str(run_dir),
            }
        )
        print(f"run {run_id} started; waiting (flwr log {run_id} shows the server's log)")
        fed.wait(run_id, timeout_s=args.timeout)
    nodes = {i: workdir / f"node-{i}" / f"run-{run_id}" for i in institutions}
    collect_node_records(run_dir, nodes, audit_dir=workdir / "audit")
    print(f"done in {time.perf_counter() - started:.0f} s")
    print_results(read_json(run_dir / RESULTS), run_dir, workdir / "audit", Console())
    audit = read_json(workdir / "audit" / AUDIT_RECORD)
    return 0 if audit["integrity"]["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
