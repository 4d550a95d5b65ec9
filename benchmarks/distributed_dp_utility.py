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

``--paired`` measures the same gaps with common random numbers instead. Each draw runs the
distributed arm (at the first ``--bits``) while keeping every client's rounded update and
noise share (simulation only: a real node never reveals them), so the decoded sum can be
compared with the exact one: wraps are counted, not inferred, and the rounding error is
measured. The server-side arms then add *that draw's* noise, descaled and rotated back, to the
exact sum of clipped updates: as it is (the noise the distributed sum carried, i.e. central DP
at the spent epsilon) and rescaled to the target epsilon's std z * clip. The draws share their
noise, so what differs between the arms is only the discrete mechanism (first pair) or the
noise's size (second): the per-draw std of each difference is a fraction of the arms' own.
The server-side arms' noise is then the descaled sum of Skellam shares, not a continuous
Gaussian; its per-coordinate variance is the target one (tests/privacy), and at this scale
(~1e10 integer units of variance) Skellam is a Gaussian to well past the accuracy measured.

    python benchmarks/distributed_dp_utility.py [configs/distributed_dp.yaml] [--set k=v ...]
        [--bits 20 16 12] [--repeats N] [--central target|spent|both] [--paired]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dp_accounting as dpa
import numpy as np

from securefed.config import RunConfig, dump_config, load_config
from securefed.plan_inputs import plan_inputs
from securefed.privacy.distributed.accounting import RDP_ORDERS
from securefed.privacy.distributed.encoding import (
    DistributedDpCodec,
    NoisySum,
    centred_sum,
    discretize,
    noise_share,
    pack_client_input,
)
from securefed.privacy.distributed.noise import share_random
from securefed.privacy.distributed.parameters import DistributedDpPlan, central_noise_std
from securefed.privacy.distributed.rotation import unrotate
from securefed.privacy.institution import InstitutionPrivacy, distributed_codec, plan_for_run
from securefed.run.federation import FederationState, run_federation
from securefed.run.folder import RunFolder
from securefed.run.inprocess import InProcessTransport
from securefed.run.progress import Progress
from securefed.run.setup import RunSetup, build_setup
from securefed.run.simulate import client_privacy
from securefed.secagg import FixedPointCodec, InputCodec, QuantizationParams
from securefed.secagg.quantize import l2_clip_factor

CodecFactory = Callable[[int, bytes], InputCodec]  # (round, global adapter hash) -> codec


def central_multiplier(epsilon: float, delta: float, rounds: int) -> float:
    """z of the Gaussian a trusted server adds to the sum, (epsilon, delta) over the rounds."""

    def event(z: float) -> dpa.DpEvent:
        return dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z), rounds)

    return float(
        dpa.calibrate_dp_mechanism(
            lambda: dpa.rdp.RdpAccountant(list(RDP_ORDERS)), event, epsilon, delta
        )
    )


@dataclass(frozen=True, eq=False)
class CentralNoiseCodec:
    """Exact secure sum of clipped updates, then the server adds ``noise`` (d,) to it."""

    plain: FixedPointCodec
    noise: np.ndarray

    @property
    def encoded_dimension(self) -> int:
        return self.plain.dimension

    def encode(self, delta, weight, extras, rng):
        return self.plain.encode(delta, weight, extras, rng)

    def decode(self, total: np.ndarray, contributors: int) -> NoisySum:
        exact = self.plain.decode(total, contributors)
        return NoisySum(exact.delta_sum + self.noise, exact.extras_sum, exact.wrap_count, 0.0)

    def bind(self, vector_spec_hash: bytes) -> bytes:
        return vector_spec_hash


def central_codec(cfg: RunConfig, dimension: int, noise: Callable[[int], np.ndarray]):
    """Codec factory of a server-side arm: round r's sum gets ``noise(r)``."""
    plain = FixedPointCodec(QuantizationParams(cfg.privacy.distributed.clip_norm, 20), dimension)
    return lambda round_index, _hash: CentralNoiseCodec(plain, noise(round_index))


@dataclass(frozen=True)
class RoundCapture:
    """What one round's distributed sum held, from its parts (simulation only)."""

    noise: np.ndarray  # (d,) the survivors' noise shares summed, descaled, rotated back
    contributors: int
    wraps: int  # coordinates whose centred sum is not the exact integer sum
    rounding_error: float  # ||decoded - (clipped sum + noise)|| / ||noise||, wraps included


@dataclass(eq=False)
class CapturingCodec:
    """Distributed DP's codec that keeps each client's clipped update, rounded update and
    noise share, so that its decode can compare the sum it got with the exact one."""

    codec: DistributedDpCodec
    round_index: int
    captured: dict[int, RoundCapture]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def encoded_dimension(self) -> int:
        return self.codec.encoded_dimension

    def encode(self, delta, weight, extras, rng=None):
        if weight != 1.0:
            raise ValueError(f"distributed DP weighs every client 1 (uniform), got {weight}")
        plan, seed, rng = self.codec.plan, self.codec.rotation_seed, np.random.default_rng()
        x = np.asarray(delta, dtype=np.float64)
        clipped = x * l2_clip_factor(float(np.linalg.norm(x)), plan.clip_norm)
        rounded, share = discretize(x, plan, seed, rng), noise_share(plan, share_random())
        self.parts.append((clipped, rounded, share))
        return pack_client_input(rounded + share, extras, plan, self.codec.extras_params, rng)

    def decode(self, total: np.ndarray, contributors: int) -> NoisySum:
        if contributors != len(self.parts):
            raise RuntimeError("the capture needs every encoded input in the sum (no dropouts)")
        decoded = self.codec.decode(total, contributors)
        plan, seed = self.codec.plan, self.codec.rotation_seed
        clipped, rounded, shares = (sum(part) for part in zip(*self.parts, strict=True))
        centred = centred_sum(np.asarray(total)[: plan.padded_dimension], plan.bits)
        noise = unrotate(shares / plan.scale, plan.dimension, seed)
        error = decoded.delta_sum - clipped - noise
        self.captured[self.round_index] = RoundCapture(
            noise,
            contributors,
            int(np.count_nonzero(centred != rounded + shares)),
            float(np.linalg.norm(error) / np.linalg.norm(noise)),
        )
        return decoded

    def bind(self, vector_spec_hash: bytes) -> bytes:
        return self.codec.bind(vector_spec_hash)


def capturing_codec(cfg: RunConfig, plan: DistributedDpPlan, captured: dict[int, RoundCapture]):
    """Codec factory of the distributed arm that fills ``captured`` round by round."""
    extras = cfg.secure_aggregation.params().quantization
    return lambda round_index, adapter_hash: CapturingCodec(
        distributed_codec(plan, extras, adapter_hash, round_index), round_index, captured
    )


def final_accuracy(
    setup: RunSetup, cfg: RunConfig, codec: CodecFactory | None = None
) -> tuple[float, float]:
    """Run the federation of ``cfg`` on ``setup``'s data, each round's sum made by ``codec``
    (None: the run's own distributed DP): pooled accuracy of the result, and the
    institution-level epsilon its ledger reports (meaningful for a distributed arm only)."""
    setup.cfg = cfg
    privacy = client_privacy(setup)
    if codec is not None:
        privacy.institution.codec = codec
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
    spent = privacy.institution.ledger.epsilon()
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


def paired_gap(differences: list[float]) -> str:
    """Mean of paired differences (accuracy), in points, with its standard error."""
    points = 100 * statistics.mean(differences)
    if len(differences) < 2:
        return f"{points:+.2f} points (one draw)"
    error = 100 * statistics.stdev(differences) / len(differences) ** 0.5
    return f"{points:+.2f} +- {error:.2f} points ({len(differences)} paired draws)"


def paired_draw(
    setup: RunSetup, cfg: RunConfig, plan: DistributedDpPlan, z: float
) -> tuple[tuple[float, float, float], float, list[RoundCapture]]:
    """One draw of the distributed arm and of the two server-side arms on its noise:
    their accuracies, the distributed arm's spent epsilon, and what each round's sum held."""
    dimension = setup.bundle.spec.size
    captured: dict[int, RoundCapture] = {}
    distributed, spent = final_accuracy(setup, cfg, capturing_codec(cfg, plan, captured))

    def rescaled(r: int) -> np.ndarray:  # the draw's noise at central DP's std for the target
        return captured[r].noise * (
            z * plan.clip_norm / central_noise_std(plan, captured[r].contributors)
        )

    same, _ = final_accuracy(setup, cfg, central_codec(cfg, dimension, lambda r: captured[r].noise))
    target, _ = final_accuracy(setup, cfg, central_codec(cfg, dimension, rescaled))
    return (distributed, same, target), spent, [captured[r] for r in sorted(captured)]


def run_paired(
    setup: RunSetup, cfg: RunConfig, plan: DistributedDpPlan, z: float, repeats: int
) -> None:
    """The distributed arm and two server-side arms on its own noise, ``repeats`` times."""
    rows: list[tuple[float, float, float]] = []
    for draw in range(repeats):  # each draw printed as it ends: a killed run keeps them
        started = time.perf_counter()
        accuracies, spent, rounds = paired_draw(setup, cfg, plan, z)
        rows.append(accuracies)
        print(
            f"  draw {draw}: distributed {accuracies[0]:.4f} (epsilon {spent:.3f}), its noise "
            f"by the server {accuracies[1]:.4f}, rescaled to the target {accuracies[2]:.4f}; "
            f"wraps {[c.wraps for c in rounds]}, rounding error / noise "
            f"{max(c.rounding_error for c in rounds):.2e} at most; "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    labels = ("distributed", "its noise by the server", "central at the target (rescaled)")
    for column, label in enumerate(labels):
        print(f"{label:34} mean pooled accuracy {statistics.mean(r[column] for r in rows):.4f}")
    print(
        "paired gap, distributed vs the same noise added by the server (the discrete "
        f"mechanism alone): {paired_gap([d - same for d, same, _ in rows])}"
    )
    print(
        "paired gap, distributed vs central DP at the target epsilon (its noise rescaled to "
        f"z * clip): {paired_gap([d - target for d, _, target in rows])}"
    )


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
    parser.add_argument(
        "--paired",
        action="store_true",
        help="server-side arms on each distributed draw's own noise (first --bits only)",
    )
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    assert cfg.privacy.distributed.enabled, "the config must turn privacy.distributed on"
    setup = build_setup(cfg)
    dimension = setup.bundle.spec.size
    ddp = plan_for_run(plan_inputs(cfg), dimension)
    z = central_multiplier(ddp.target_epsilon, ddp.delta, cfg.training.rounds)
    print(
        f"{cfg.name}: {cfg.training.rounds} rounds, {cfg.training.clients_per_round} of "
        f"{cfg.partition.num_clients} per round, d={dimension}, epsilon "
        f"{ddp.target_epsilon}, delta {ddp.delta}, clip {ddp.clip_norm}; central z={z:.3f}"
    )
    initial = setup.evaluate(setup.initial_vector)["pooled"]["accuracy"]
    print(f"initial adapter: pooled accuracy {initial:.4f}")
    if args.paired:
        bits_cfg = load_config(
            args.config, [*args.overrides, f"secure_aggregation.bits={args.bits[0]}"]
        )
        run_paired(setup, bits_cfg, plan_for_run(plan_inputs(bits_cfg), dimension), z, args.repeats)
        return

    def gaussian(std: float) -> CodecFactory:
        return central_codec(
            cfg, dimension, lambda r: np.random.default_rng().normal(0.0, std, dimension)
        )

    # (label, overrides, codec (None: the run's distributed DP), draws)
    arms: list[tuple[str, list[str], CodecFactory | None, int]] = []
    if args.central != "spent":
        arms.append(
            ("central (server-added Gaussian)", [], gaussian(z * ddp.clip_norm), args.repeats)
        )
    no_noise = central_codec(cfg, dimension, lambda r: np.zeros(dimension))
    arms.append(("clipped, no noise (reference)", [], no_noise, 1))  # nothing to redraw
    arms += [
        (f"distributed, {b} bits", [f"secure_aggregation.bits={b}"], None, args.repeats)
        for b in args.bits
    ]
    results: dict[str, list[float]] = {}
    spent: float | None = None
    while arms:
        label, extra, codec, repeats = arms.pop(0)
        arm_cfg = load_config(args.config, [*args.overrides, *extra])
        try:
            InstitutionPrivacy(arm_cfg, dimension)
        except ValueError as exc:
            print(f"{label:34} infeasible: {exc}")
            continue
        started = time.perf_counter()
        runs = []
        for draw in range(repeats):  # each draw printed as it ends: a killed run keeps them
            runs.append(final_accuracy(setup, arm_cfg, codec))
            print(f"  {label} draw {draw}: {runs[-1][0]:.4f}", flush=True)
        accuracies = [accuracy for accuracy, _ in runs]
        results[label] = accuracies
        shown = ", ".join(f"{a:.4f}" for a in accuracies)
        print(
            f"{label:34} pooled accuracy {statistics.mean(accuracies):.4f} ({shown}); "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        if spent is None and codec is None and args.central != "target":
            spent = runs[0][1]  # the same survivors every draw: the same ledger
            z_spent = central_multiplier(spent, ddp.delta, cfg.training.rounds)
            print(f"{label} spent epsilon {spent:.3f}: central z={z_spent:.4f}")
            arms.append(
                (
                    "central at the spent epsilon",
                    [],
                    gaussian(z_spent * ddp.clip_norm),
                    args.repeats,
                )
            )
    results.pop("clipped, no noise (reference)", None)
    for reference in ("central (server-added Gaussian)", "central at the spent epsilon"):
        if reference not in results:
            continue
        for label, accuracies in results.items():
            if label.startswith("distributed,"):
                print(f"gap, {label} vs {reference}: {gap(accuracies, results[reference])}")


if __name__ == "__main__":
    main()
