"""Regenerate ``audits/example/``: the audit of ``configs/dp.yaml`` (DP-SGD that learns).

    python scripts/make_example_audit.py [--config PATH] [--set KEY=VALUE ...]

Runs ``securefed simulate`` on ``configs/dp.yaml`` (DP-SGD at epsilon 8 and secure
aggregation on, so that every section of the audit has something to show; the embedded
default with DP on learns nothing and its audit says only that) plus any ``--set``, into
``runs/example`` (replaced), then writes its audit to
``audits/example/`` (replaced) and verifies the run folder. The run folder itself
(checkpoints) stays out of the repository; ``securefed audit runs/example`` rebuilds the
same ``audit.json`` from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rich.console import Console

from securefed.audit import verify_run, write_audit
from securefed.config import load_config
from securefed.run.progress import Progress
from securefed.run.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "configs" / "dp.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=EXAMPLE_CONFIG, help="the run's config")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another config override (repeatable)",
    )
    args = parser.parse_args(argv)
    run_dir, out_dir = ROOT / "runs" / "example", ROOT / "audits" / "example"
    for path in (run_dir, out_dir):
        if path.exists():
            shutil.rmtree(path)
    cfg = load_config(args.config, args.set)
    console = Console(stderr=True)
    simulate(cfg, out=str(run_dir), progress=Progress(console))
    write_audit(run_dir, out_dir)
    result = verify_run(run_dir)
    console.print(
        f"audit written to {out_dir.relative_to(ROOT)}/; verification "
        f"{'passed' if result.ok else 'FAILED'} ({result.checks} checks)"
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
