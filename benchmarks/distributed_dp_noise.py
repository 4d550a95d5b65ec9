"""Distributed DP against central DP: how much more noise the same epsilon costs.

For the federation of configs/distributed_dp.yaml (50 institutions, 15 per round, Shamir
threshold 11, c = floor(0.05 x 15) = 0 colluders, 20 rounds, epsilon 8, delta 1e-5, clip 1)
it calibrates the distributed mechanism at several bit widths and dimensions and prints the
noise std in the descaled sum (all 15 survive; and the 11 the calibration assumes) against
the continuous Gaussian a trusted server would add for the same epsilon (dp-accounting,
exact Poisson-subsampled Gaussian RDP). The ratio is the utility price of not trusting the
server, before training.

    python benchmarks/distributed_dp_noise.py
"""

from __future__ import annotations

import argparse

import dp_accounting as dpa

from securefed.privacy.distributed.accounting import RDP_ORDERS
from securefed.privacy.distributed.parameters import central_noise_std, plan_distributed_dp
from securefed.secagg import SecAggParams
from securefed.secagg.params import cohort_colluders


def central_gaussian_std(epsilon: float, delta: float, q: float, rounds: int, clip: float) -> float:
    """Noise std a trusted server adds to the sum for (epsilon, delta) over the rounds."""

    def event(z: float) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)), rounds)

    z = dpa.calibrate_dp_mechanism(
        lambda: dpa.rdp.RdpAccountant(list(RDP_ORDERS)), event, epsilon, delta
    )
    return z * clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=float, nargs="+", default=[7.5e4, 1e6])
    parser.add_argument("--bits", type=int, nargs="+", default=[20, 16, 12])
    parser.add_argument("--mechanism", choices=["skellam", "dgauss"], default="skellam")
    args = parser.parse_args()
    eps, delta, q, rounds, clip, cohort, threshold = 8.0, 1e-5, 15 / 50, 20, 1.0, 15, 11
    gaussian = central_gaussian_std(eps, delta, q, rounds, clip)
    print(f"central Gaussian (trusted server), same epsilon: std {gaussian:.4f}")
    print(f"{'d':>9} {'bits':>5} {'std, 15 survive':>16} {'std, 11 survive':>16} {'x central':>10}")
    for d in (int(x) for x in args.dims):
        for bits in args.bits:
            try:
                plan = plan_distributed_dp(
                    mechanism=args.mechanism,
                    target_epsilon=eps,
                    delta=delta,
                    clip_norm=clip,
                    bits=bits,
                    dimension=d,
                    cohort_size=cohort,
                    min_survivors=threshold,
                    colluders=cohort_colluders(cohort, SecAggParams().corrupt_fraction),
                    sample_rate=q,
                    rounds=rounds,
                )
            except ValueError as exc:
                print(f"{d:>9} {bits:>5}  infeasible: {exc}")
                continue
            full, least = central_noise_std(plan, cohort), central_noise_std(plan, threshold)
            print(f"{d:>9} {bits:>5} {full:>16.4f} {least:>16.4f} {full / gaussian:>10.3f}")


if __name__ == "__main__":
    main()
