"""Distributed DP against central DP: final accuracy of the same federation, same epsilon.

One process, one setup (data, partition, backbone), then one federation per arm, each from
the same initial adapter over the same sampled cohorts and dropouts:

- ``distributed, b bits``: the run as ``securefed simulate`` runs it with
  ``privacy.distributed`` on (each client's noise share inside the secure sum mod 2^b,
  calibrated for the threshold's smallest survivor set), for each ``--bits``;
- ``central``: the same clipped updates summed exactly by secure aggregation, then a
  continuous Gaussian of std z * clip added by the server after unmasking, z calibrated for
  the same (epsilon, delta) over the same rounds (dp-accounting RDP, no amplification, as the
  distributed arm claims none). It protects nothing against the server: the reference only.
- ``central at the spent epsilon``: the same, z calibrated for the epsilon the first
  distributed arm's ledger reports. The distributed noise is planned for the smallest
  survivor set the threshold allows, so when more survive its sum carries more noise and
  spends less than the target; at the spent epsilon both arms carry the same noise, and what
  remains between them is the discrete mechanism (rotation, rounding, Skellam's bounds, wraps).
- ``clipped, no noise``: the same clipped updates summed exactly, no noise: what the
  federation reaches without institution-level DP, so the cost of either noise shows.

Noise comes from the OS, so each arm is one draw; ``--repeats`` runs each arm again and
prints every final accuracy, the mean, and each gap with its standard error (resolving a
1-point gap takes ~100 draws an arm at a per-draw std of 3 points). Rounds are not evaluated
(only the final adapter is), which is where this saves time over ``securefed simulate``.

    python benchmarks/distributed_dp_utility.py [configs/distributed_dp.yaml] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass

import dp_accounting as dpa
import numpy as np

from securefed.config import RunConfig, dump_config, load_config
from securefed.privacy.distributed.accounting import RDP_ORDERS
from securefed.privacy.distributed.encoding import NoisySum
from securefed.privacy.distributed.noise import os_noise_generator
from securefed.privacy.institution import InstitutionPrivacy, plan_for_run
from securefed.run.federation import FederationState, run_federation
from securefed.run.folder import RunFolder
from securefed.run.inprocess import InProcessTransport
from securefed.run.progress import Progress
from securefed.run.setup import RunSetup, build_setup
from securefed.run.simulate import client_privacy
from securefed.secagg import FixedPointCodec, QuantizationParams


def central_multiplier(epsilon: float, delta: float, rounds: int) -> float:
    """z of the Gaussian a trusted server adds to the sum, (epsilon, delta) over the rounds."""

    def event(z: float) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z), rounds)

    return float(
        dpa.calibrate_dp_mechanism(
            lambda: dpa.rdp.RdpAccountant(list(RDP_ORDERS)), event, epsilon, delta
        )
    )


@dataclass(frozen=True)
class CentralGaussianCodec:
    """Exact secure sum of clipped updates, then server-side Gaussian noise (std ``std``)."""

    plain: FixedPointCodec
    std: float

    @property
    def encoded_dimension(self) -> int:
        return self.plain.dimension

    def encode(self, delta, weight, extras, rng):
        return self.plain.encode(delta, weight, extras, rng)

    def decode(self, total: np.ndarray, contributors: int) -> NoisySum:
        exact = self.plain.decode(total, contributors)
        noise = os_noise_generator().normal(0.0, self.std, exact.delta_sum.shape[0])
        return NoisySum(exact.delta_sum + noise, exact.extras_sum, exact.wrap_count, 0.0)

    def bind(self, vector_spec_hash: bytes) -> bytes:
        return vector_spec_hash


def final_accuracy(
    setup: RunSetup, cfg: RunConfig, central_std: float | None
) -> tuple[float, float | None]:
    """Run the federation of ``cfg`` on ``setup``'s data: pooled accuracy of the result, and
    the institution-level epsilon its ledger reports (None for a central arm)."""
    setup.cfg = cfg
    privacy = client_privacy(setup)
    if central_std is not None:  # the server's noise replaces the clients' shares
        plain = FixedPointCodec(
            QuantizationParams(cfg.privacy.distributed.clip_norm, 20), setup.bundle.spec.size
        )
        privacy.institution.codec = lambda r, h: CentralGaussianCodec(plain, central_std)
    with tempfile.TemporaryDirectory() as tmp:
        folder = RunFolder.create(tmp, dump_config(cfg))
        folder.write_setup({}, None, setup.initial_vector, setup.bundle.spec.hash)
        state = run_federation(
            cfg,
            folder,
            FederationState(global_vector=setup.initial_vector.copy()),
            InProcessTransport(setup, privacy, Progress(enabled=False)),
            lambda vector: None,
            setup.bundle.spec.hash,
            Progress(enabled=False),
        )
    spent = privacy.institution.ledger.epsilon() if central_std is None else None
    return setup.evaluate(state.global_vector)["pooled"]["accuracy"], spent


def gap(arm: list[float], reference: list[float]) -> str:
    """Mean accuracy of ``arm`` minus ``reference``, in points, with its standard error when
    both arms have several draws (independent draws: the noise is fresh in each)."""
    points = 100 * (statistics.mean(arm) - statistics.mean(reference))
    if min(len(arm), len(reference)) < 2:
        return f"{points:+.1f} points (one draw: rerun with --repeats for an error bar)"
    error = (
        100
        * (statistics.variance(arm) / len(arm) + statistics.variance(reference) / len(reference))
        ** 0.5
    )
    return f"{points:+.1f} +- {error:.1f} points ({len(arm)} and {len(reference)} draws)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="configs/distributed_dp.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--bits", type=int, nargs="+", default=[20, 16, 12])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--central",
        choices=["target", "spent", "both"],
        default="both",
        help="central arms: at the target epsilon, at the epsilon the distributed arm spent",
    )
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    assert cfg.privacy.distributed.enabled, "the config must turn privacy.distributed on"
    setup = build_setup(cfg)
    ddp = plan_for_run(cfg, setup.bundle.spec.size)
    z = central_multiplier(ddp.target_epsilon, ddp.delta, cfg.training.rounds)
    print(
        f"{cfg.name}: {cfg.training.rounds} rounds, {cfg.training.clients_per_round} of "
        f"{cfg.partition.num_clients} per round, d={setup.bundle.spec.size}, epsilon "
        f"{ddp.target_epsilon}, delta {ddp.delta}, clip {ddp.clip_norm}; central z={z:.3f}"
    )
    initial = setup.evaluate(setup.initial_vector)["pooled"]["accuracy"]
    print(f"initial adapter: pooled accuracy {initial:.4f}")
    arms: list[tuple[str, list[str], float | None]] = []
    if args.central != "spent":
        arms.append(("central (server-added Gaussian)", [], z * ddp.clip_norm))
    arms.append(("clipped, no noise (reference)", [], 0.0))
    arms += [(f"distributed, {b} bits", [f"secure_aggregation.bits={b}"], None) for b in args.bits]
    results: dict[str, list[float]] = {}
    spent: float | None = None
    while arms:
        label, extra, central_std = arms.pop(0)
        arm_cfg = load_config(args.config, [*args.overrides, *extra])
        try:
            InstitutionPrivacy(arm_cfg, setup.bundle.spec.size)
        except ValueError as exc:
            print(f"{label:34} infeasible: {exc}")
            continue
        started = time.perf_counter()
        repeats = 1 if central_std == 0.0 else args.repeats  # no noise: nothing to redraw
        runs = []
        for draw in range(repeats):  # each draw printed as it ends: a killed run keeps them
            runs.append(final_accuracy(setup, arm_cfg, central_std))
            print(f"  {label} draw {draw}: {runs[-1][0]:.4f}", flush=True)
        accuracies = [accuracy for accuracy, _ in runs]
        results[label] = accuracies
        shown = ", ".join(f"{a:.4f}" for a in accuracies)
        print(
            f"{label:34} pooled accuracy {statistics.mean(accuracies):.4f} ({shown}); "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        if spent is None and central_std is None and args.central != "target":
            spent = runs[0][1]  # the same survivors every draw: the same ledger
            z_spent = central_multiplier(spent, ddp.delta, cfg.training.rounds)
            print(f"{label} spent epsilon {spent:.3f}: central z={z_spent:.4f}")
            arms.append(("central at the spent epsilon", [], z_spent * ddp.clip_norm))
    results.pop("clipped, no noise (reference)", None)
    for reference in ("central (server-added Gaussian)", "central at the spent epsilon"):
        if reference not in results:
            continue
        for label, accuracies in results.items():
            if label.startswith("distributed,"):
                print(f"gap, {label} vs {reference}: {gap(accuracies, results[reference])}")


if __name__ == "__main__":
    main()
