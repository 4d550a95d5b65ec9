"""The empirical privacy audit on real (small) runs: DP off, DP on at epsilon 8 and 2, and DP
with a tenth of the noise while the ledger keeps the claimed sigma (a broken implementation).

Each run is ``securefed simulate`` on a small synthetic config with canaries (gradient by
default, ``--kind input`` for black-box ones) in every institution; ``--set`` adds config
overrides (e.g. more training). The figures are the audit's own (``build_audit``'s
``empirical`` section). The broken case scales DP-SGD's noise through ``dp_training``'s
test-only ``noise_scale_for_testing`` (patched in this process only). Prints one line per
run, with the estimate's share of the claim. ``--rescore RUN_DIR ...`` recomputes the scores
and figures of saved run folders with this checkout's scoring, from their canary traces (no
training). ``--ideal SIGMA ...`` draws the scores of the best linear auditor of a Dirac
canary: its Binomial(steps, q) samples plus the noise over those steps, for configs/dp.yaml's
q = 0.128 and 32 canary-carrying steps, five draws each; of one institution's own DP-SGD
output (what the audit scores: ``privacy.canary_trace``) and of the server's view (the sum
of 4 institutions' noise, without the records' drift or the optimizer).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/canary_audit.py [--seeds 0 1 2]
        [--scenarios dp_off eps8 eps2 broken_eps2] [--canaries 1000] [--kind input]
        [--set KEY=VALUE ...] [--out DIR] [--config configs/dp.yaml] [--rescore RUN_DIR ...]
        [--ideal SIGMA ...]

On configs/dp.yaml a run takes about 4 minutes alone on the 2-core reference machine, and
20-25 minutes when the machine is shared (docs/empirical-audit.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

SMALL = [
    "task.synthetic.num_examples=120",
    "training.rounds=2",
    "training.local_steps=2",
    "training.batch_size=8",
    "model.max_length=32",
    "partition.num_clients=3",
    "training.clients_per_round=3",
    "secure_aggregation.enabled=true",
    "secure_aggregation.threshold=2",
    "baselines=[]",
]
SCENARIOS = {
    "dp_off": (["privacy.dp.enabled=false"], 1.0),
    "eps8": (["privacy.dp.enabled=true", "privacy.dp.target_epsilon=8.0"], 1.0),
    "eps2": (["privacy.dp.enabled=true", "privacy.dp.target_epsilon=2.0"], 1.0),
    "broken_eps2": (["privacy.dp.enabled=true", "privacy.dp.target_epsilon=2.0"], 0.1),
}


def run_one(
    scenario: str,
    seed: int,
    canaries: int,
    out: Path,
    kind: str = "gradient",
    extra=(),
    config: str | None = None,
) -> dict:
    """One run and its audit; the empirical figures and whether the critical flag fired."""
    import securefed.privacy.dp_sgd as dp_sgd
    from securefed.audit import build_audit
    from securefed.config import load_config
    from securefed.run.simulate import simulate

    overrides, noise_scale = SCENARIOS[scenario]
    honest = dp_sgd.dp_training
    if noise_scale != 1.0:  # TEST ONLY: less noise than the ledger records
        dp_sgd.dp_training = functools.partial(honest, noise_scale_for_testing=noise_scale)
    started = time.perf_counter()
    try:
        cfg = load_config(
            config,
            overrides=[
                f"name={scenario}-s{seed}",
                f"seed={seed}",
                *(SMALL if config is None else ()),
                *overrides,
                f"audit.canaries={canaries}",
                f"audit.canary_kind={kind}",
                *extra,
            ],
        )
        run_dir, _ = simulate(cfg, out=str(out / f"{scenario}-s{seed}"))
    finally:
        dp_sgd.dp_training = honest
    audit = build_audit(run_dir)
    return {
        "scenario": scenario,
        "kind": kind,
        "seed": seed,
        **_figures(audit["empirical"]),
        "critical": any(f["code"] == "empirical_leak" for f in audit["flags"]),
        "verified": audit["integrity"]["verified"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def rescore(run_dir: Path) -> dict:
    """A saved run folder's figures with this checkout's gradient-canary scoring (from the
    run's canary trace)."""
    from securefed.audit.empirical_report import section_from_record
    from securefed.privacy.canaries import CanaryPlan
    from securefed.privacy.canary_scores import gradient_scores
    from securefed.privacy.canary_trace import CanaryTrace
    from securefed.run.folder import CANARIES, CANARY_TRACE, RunFolder

    folder = RunFolder(run_dir)
    record = json.loads(folder.file(CANARIES).read_text())
    plan = CanaryPlan.from_json(record["plan"])
    trace = CanaryTrace.from_arrays(plan, folder.load_arrays(CANARY_TRACE))
    section = section_from_record(record, gradient_scores(plan, trace))
    return {
        "run": run_dir.name,
        **_figures(section),
        "critical": section["lower_bound_exceeds_claim"],
    }


def ideal(sigma: float, q: float = 0.128, steps: int = 32, institutions: int = 4) -> dict:
    """One-run bounds and estimates of the ideal scores (module docstring), five draws of
    1000 canaries; ``sigma`` is the noise multiplier each institution adds (times C)."""
    import numpy as np

    from securefed.audit.empirical import one_run_lower_bound, one_shot_estimate

    rng = np.random.default_rng(0)
    noise = sigma * (steps * institutions) ** 0.5  # in units of one sampled step's C
    bounds, estimates = [], []
    for _ in range(5):
        coins = rng.random(1000) < 0.5
        scores = rng.normal(0.0, noise, 1000) + coins * rng.binomial(steps, q, 1000)
        bounds.append(round(one_run_lower_bound(scores, coins, 1e-5).epsilon, 2))
        estimates.append(round(one_shot_estimate(scores, coins, 1e-5).epsilon, 2))
    return {"sigma": sigma, "institutions": institutions, "bounds": bounds, "estimates": estimates}


def _figures(section: dict) -> dict:
    claimed = float(section["claimed_epsilon"])
    return {
        "claimed": claimed,
        "lower_bound": section["epsilon_lower_bound"],
        "estimate": section["epsilon_estimate"],
        "interval": section["epsilon_estimate_interval"],
        "estimate_share_of_claim": float(section["epsilon_estimate"]) / claimed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--kind", choices=["gradient", "input"], default="gradient")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config", help="a config file instead of the small default")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--rescore", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--ideal", nargs="+", type=float, metavar="SIGMA")
    args = parser.parse_args()
    if args.ideal:
        for sigma in args.ideal:
            for institutions in (4, 1):
                print(json.dumps(ideal(sigma, institutions=institutions)), flush=True)
        return
    if args.rescore:
        for run_dir in args.rescore:
            print(json.dumps(rescore(run_dir)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        for scenario in args.scenarios:
            seeds = args.seeds[:1] if scenario == "dp_off" else args.seeds
            for seed in seeds:
                row = run_one(scenario, seed, args.canaries, out, args.kind, args.set, args.config)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
