"""Distributed DP: a client's secure-aggregation work per round with it against without.

Per client of one round (n clients, d coordinates), both measured in this process:

- without: ``quantize.encode_input`` (clip, scale, stochastic rounding) then
  ``SecAggClient.masked_input`` (open shares, derive the pair keys, add the AES-CTR masks);
- with: ``distributed.encoding.encode_client`` (clip, randomized Hadamard rotation padded to
  2^k, scale, conditional rounding, the noise share, modular clipping) then the same
  ``masked_input`` on the padded vector.

The other stages (advertise and share keys, unmask) do not depend on the vector and are the
same in both. Timings alternate plain and distributed clients and report the fastest client
of each (the machine is shared; the minimum is the stable estimate), wall and CPU time, and
the ratio of the two, and the upload bytes (the rotation pads to 2^k). Local training, which
dominates a real client's round, is not run here: ``--training-cpu-s`` adds a measured
training time to both sides and prints the whole-round ratio it implies (the embedded
example audit, audits/example, spent ~6 CPU-s per client and round at d ~ 75,000).

    python benchmarks/distributed_dp_bench.py --dim 1e6 --clients 15
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from securefed.privacy.distributed.encoding import encode_client
from securefed.privacy.distributed.noise import share_random
from securefed.privacy.distributed.parameters import plan_distributed_dp
from securefed.secagg import RoundContext, SecAggClient, SecAggParams, SecAggServer, plan_round
from securefed.secagg.params import cohort_colluders
from securefed.secagg.quantize import encode_input


def prepared_clients(n: int, dimension: int, params: SecAggParams):
    """Clients and their share deliveries, ready for the masked-input stage."""
    context = RoundContext(0, n, params, b"g" * 32, b"s" * 32, dimension, 0)
    ids = list(range(n))
    clients = {u: SecAggClient(u, context) for u in ids}
    server = SecAggServer(context, invited=frozenset(ids))
    for u in ids:
        server.accept(clients[u].advertise_keys())
    directory = server.close_advertise_keys()
    for u in ids:
        server.accept(clients[u].share_keys(directory))
    return clients, server.close_share_keys()


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=float, default=1e6)
    parser.add_argument("--clients", type=int, default=15)
    parser.add_argument("--bits", type=int, default=20)
    parser.add_argument("--mechanism", choices=["skellam", "dgauss"], default="skellam")
    parser.add_argument("--training-cpu-s", type=float, default=None)
    args = parser.parse_args()
    d, n = int(args.dim), args.clients
    params = SecAggParams(clip_norm=1.0, bits=args.bits)
    t = plan_round(n, params).threshold
    start = time.perf_counter()
    plan = plan_distributed_dp(
        mechanism=args.mechanism,
        target_epsilon=8.0,
        delta=1e-5,
        clip_norm=1.0,
        bits=args.bits,
        dimension=d,
        cohort_size=n,
        min_survivors=t,
        colluders=cohort_colluders(n, params.corrupt_fraction),
        sample_rate=n / 50,
        rounds=30,
    )
    print(
        f"plan ({time.perf_counter() - start:.2f} s): {plan.mechanism}, m={plan.padded_dimension}"
        f", scale={plan.scale:.4g}, local variance={plan.local_variance:.4g}, t={t} of {n}"
    )
    plain_clients, plain_deliveries = prepared_clients(n, d, params)
    ddp_clients, ddp_deliveries = prepared_clients(n, plan.padded_dimension, params)
    rotation_seed = b"round-0"
    deltas = [
        np.random.default_rng(u).normal(scale=0.01, size=d).astype(np.float32) for u in range(n)
    ]
    extras = np.zeros(0)

    def plain_encode(u: int) -> np.ndarray:
        return encode_input(deltas[u], 1.0, extras, params.quantization)

    def ddp_encode(u: int) -> np.ndarray:
        return encode_client(
            deltas[u],
            extras,
            plan,
            params.quantization,
            rotation_seed,
            np.random.default_rng(),
            share_random(),
        )

    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in ("pe", "pc", "de", "dc")}
    for u in range(n):  # alternate, so machine load hits both alike
        rows["pe"].append(timed(lambda u=u: plain_encode(u)))
        rows["de"].append(timed(lambda u=u: ddp_encode(u)))
        rows["pc"].append(
            timed(lambda u=u: plain_clients[u].masked_input(plain_deliveries[u], plain_encode(u)))
        )
        rows["dc"].append(
            timed(lambda u=u: ddp_clients[u].masked_input(ddp_deliveries[u], ddp_encode(u)))
        )
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in rows.items()}
    print(f"d={d}, {n} clients per round ({n - 1} pair masks each), bits={args.bits}")
    print(f"{'':34}{'wall s':>10}{'cpu s':>10}")
    for key, label in (
        ("pe", "encode, plain quantize"),
        ("de", "encode, distributed DP"),
        ("pc", "client masked_input, plain"),
        ("dc", "client masked_input, DDP"),
    ):
        print(f"{label:34}{best[key][0]:10.4f}{best[key][1]:10.4f}")
    print(
        f"ratio encode only (DDP / plain):        wall {best['de'][0] / best['pe'][0]:.2f}x"
        f"  cpu {best['de'][1] / best['pe'][1]:.2f}x"
    )
    print(
        f"ratio client SecAgg stage (DDP / plain): wall {best['dc'][0] / best['pc'][0]:.2f}x"
        f"  cpu {best['dc'][1] / best['pc'][1]:.2f}x"
    )
    print(f"upload per client: plain {4 * d} B, distributed DP {4 * plan.padded_dimension} B")
    if args.training_cpu_s is not None:
        train = args.training_cpu_s
        ratio = (train + best["dc"][1]) / (train + best["pc"][1])
        print(f"whole client round, {train} CPU-s of training added: {ratio:.3f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
