"""What 1000 canaries cost a run: wall time with and without them (target <= 1.2x).

Runs ``securefed simulate`` on one small DP config (fixed sigma: no calibration to time),
alternating without and with canaries, and prints each run's wall time and this process's
CPU time, and the ratio of the fastest of each (the least disturbed by other work on the
machine). The time with canaries includes scoring every canary against the released adapter
at the end (and, for input canaries, encoding and caching them and training on the included
ones as records).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/canary_cost.py [--repeats 2] [--canaries 1000]
        [--kind gradient|input] [--config configs/dp.yaml] [--set baselines=[]]

The canaries' cost is fixed (m directions, or m records to encode and score) while the run's
grows with its data and rounds, so the ratio depends on the run: ``--config configs/dp.yaml``
measures it on the DP config of record. ``--set KEY=VALUE`` (repeatable) overrides that config
like ``securefed simulate --set``: ``--set baselines=[]`` times the federated run alone, the one
the canaries ride in (the baselines would only add to both sides and flatter the ratio).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CONFIG = [
    "task.synthetic.num_examples=240",
    "training.rounds=3",
    "training.local_steps=4",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "privacy.dp.enabled=true",
    "privacy.dp.noise_multiplier=1.0",
    "secure_aggregation.enabled=true",
    "secure_aggregation.threshold=2",
    "baselines=[]",
]


def timed_run(
    canaries: int,
    out: Path,
    kind: str = "gradient",
    config: str | None = None,
    overrides: tuple[str, ...] = (),
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one run: ``config`` (None: the small
    DP config above) with ``overrides``."""
    from securefed.config import load_config
    from securefed.run.simulate import simulate

    cfg = load_config(
        config,
        overrides=[
            "name=cost",
            *(CONFIG if config is None else ()),
            *overrides,
            f"audit.canaries={canaries}",
            f"audit.canary_kind={kind}",
        ],
    )
    started, cpu = time.perf_counter(), time.process_time()
    simulate(cfg, out=str(out))
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--kind", choices=["gradient", "input"], default="gradient")
    parser.add_argument("--config", help="a config file instead of the small DP config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the config, as securefed simulate --set (repeatable)",
    )
    args = parser.parse_args()
    times: dict[int, list[tuple[float, float]]] = {0: [], args.canaries: []}
    with tempfile.TemporaryDirectory() as tmp:
        timed_run(0, Path(tmp) / "warm-up")  # imports, backbone from disk: the small config
        for i in range(args.repeats):
            for m in times:
                wall, cpu = timed_run(
                    m, Path(tmp) / f"m{m}-{i}", args.kind, args.config, tuple(args.overrides)
                )
                times[m].append((wall, cpu))
                print(f"canaries {m:5d}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s", flush=True)
    for what, column in (("wall", 0), ("CPU", 1)):  # CPU time: less disturbed by other work
        without = min(t[column] for t in times[0])
        with_canaries = min(t[column] for t in times[args.canaries])
        print(
            f"fastest {what}: without {without:.1f} s, with {args.canaries} {args.kind} "
            f"canaries {with_canaries:.1f} s: ratio {with_canaries / without:.3f}"
        )


if __name__ == "__main__":
    main()
