"""The ``securefed`` command: simulate | plan | evaluate | audit | sweep.

User errors (bad config, missing files, a protocol abort that ends a run) print one line and
exit 2; anything else is a bug and keeps its traceback.

May import: ``run``, ``sweep``, ``audit``, ``config``, ``errors`` (the top layer: nothing
imports it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from pathlib import Path

from rich.console import Console

from securefed.audit.command import add_audit_parser, write_audit
from securefed.config import load_config
from securefed.errors import ConfigError, SecurefedError
from securefed.run.folder import RunFolder, write_json
from securefed.run.progress import Progress
from securefed.run.resume import finished, finished_message
from securefed.run.summary import print_results
from securefed.sweep import add_sweep_parser

EXIT_USER_ERROR = 2


def _quiet_libraries() -> None:
    """Offline by default, and no library chatter between our progress bars."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()  # "Generating train split" on every read of a data file
    datasets.logging.set_verbosity_error()


def _cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    if args.resume and (args.config or args.set or args.out):
        raise ConfigError(
            "--resume",
            args.resume,
            "continues a run with its own config; do not pass CONFIG, --set or --out with it",
        )
    if args.resume and finished(resumed := RunFolder(args.resume)):
        console.print(finished_message(resumed), soft_wrap=True, highlight=False)
        return 0
    cfg = None if args.resume else load_config(args.config, args.set)
    _quiet_libraries()
    from securefed.run.setup import resolve_device  # lazy: torch stays out of audit and sweep
    from securefed.run.simulate import simulate  # lazy: torch stays out of audit and sweep

    progress = Progress(Console(stderr=True), enabled=not args.quiet)
    if cfg is not None:
        resolve_device(cfg.training.device)  # no CUDA for training.device=cuda: say so first
    run_dir, results = simulate(cfg, out=args.out, resume=args.resume, progress=progress)
    print_results(results, run_dir, write_audit(run_dir), console)
    return 0


def _cmd_plan(args: argparse.Namespace, console: Console) -> int:
    cfg = load_config(args.config, args.set)
    if not cfg.privacy.any_mechanism:
        console.print(
            "privacy.dp.enabled and privacy.distributed.enabled are false: no DP noise to plan "
            "(--set either to true)",
            soft_wrap=True,
        )
        return 0
    _quiet_libraries()
    from securefed.run.simulate import plan_only  # lazy: torch stays out of audit and sweep

    console.print(plan_only(cfg), soft_wrap=True, highlight=False, markup=False)
    return 0


def _cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    if (args.run is None) == (args.adapter is None) or (args.adapter is None) != (
        args.config is None
    ):
        raise ConfigError(
            "evaluate",
            " ".join(filter(None, [args.run, args.adapter, args.config])) or "(nothing)",
            "RUN_DIR, or --adapter FILE with --config CONFIG (the config it was trained with)",
        )
    _quiet_libraries()
    from securefed.run import evaluate  # lazy: torch stays out of audit and sweep

    if args.run is not None:
        cfg, adapter = evaluate.run_adapter(args.run, args.round)
    else:
        cfg, adapter = load_config(args.config), Path(args.adapter)
    cfg = evaluate.with_task_overrides(cfg, args.set)
    result = evaluate.evaluate_adapter(cfg, adapter, all_records=bool(args.set))
    console.print(result.line(), soft_wrap=True, highlight=False, markup=False)
    if args.json:
        write_json(Path(args.json), dataclasses.asdict(result))
    return 0


def _add_set(parser: argparse.ArgumentParser, metavar: str, help_text: str) -> None:
    """The repeatable ``--set KEY=VALUE`` override every config-reading command takes."""
    parser.add_argument("--set", action="append", default=[], metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securefed", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate", help="run a federation in one process (default: embedded demo)"
    )
    sim.add_argument("config", nargs="?", help="YAML config (default: the embedded default)")
    _add_set(sim, "KEY=VALUE", "override a config key, e.g. --set training.rounds=2 (repeatable)")
    sim.add_argument("--out", help="run folder to create (default: runs/<name>-<timestamp>)")
    sim.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last finished round"
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bars")
    sim.set_defaults(func=_cmd_simulate)
    plan = sub.add_parser(
        "plan", help="print each institution's DP noise and whether the run can learn; no training"
    )
    plan.add_argument("config", nargs="?", help="YAML config (default: the embedded default)")
    _add_set(plan, "KEY=VALUE", "override a config key")
    plan.set_defaults(func=_cmd_plan)
    ev = sub.add_parser(
        "evaluate",
        help="accuracy of a trained adapter on a task's test records, with its 95%% interval",
    )
    ev.add_argument("run", nargs="?", help="run folder: its final adapter on its held-out test")
    ev.add_argument("--round", type=int, help="score the adapter after this round (0-based)")
    ev.add_argument("--adapter", help="a saved adapter file (securefed's safetensors layout)")
    ev.add_argument("--config", help="the config the --adapter was trained with")
    _add_set(
        ev, "task.KEY=VALUE", "score every record these task settings read (e.g. task.split=test)"
    )
    ev.add_argument("--json", help="also write the result to this JSON file")
    ev.set_defaults(func=_cmd_evaluate)
    add_audit_parser(sub)
    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    console = Console()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, console)
    except SecurefedError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: finished rounds are saved; continue with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
