"""A model of one round's wall time on Flower over a WAN, at 10, 100 and 1000 institutions.

Inputs, each measured here or stated as an assumption (flags):

- bytes: each institution's protocol bytes per round, up and down, from the round
  transcript of ``securefed.secagg.simulate_round`` run with the embedded default's plan at
  n (graph, degree k, threshold, signed identities) on a 16-coordinate vector; the part
  that grows with the adapter (the global adapter down, the masked vector up: 4 bytes a
  coordinate each) is added for ``--dimension`` coordinates. Per-neighbour messages have
  fixed sizes, so these bytes are a + b*k exactly; n = 1000 (k = 398) is extrapolated from
  the measured n = 10 and n = 100 unless ``--measure-1000``.
- compute: local training ``--train-s`` (measured by ``benchmarks/flower_round.py``); AES-CTR
  keystream for the masks (each node k + 1 masks of the vector, the server n self-masks),
  at this machine's rate, measured here.
- latency: five exchanges per round (``secagg.STAGE_TABLE``); in each, the slowest node
  waits up to ``--poll-s`` (securefed's SuperNode, ``securefed.flower.supernode``, pulls
  again 0.2 s after an empty pull; plain ``flower-supernode`` 1.42 sleeps 3 s, a constant in
  ``flwr.supernode.start_client_internal``) plus two round trips of ``--rtt-s``
  (pull, push); bandwidth ``--node-mbps`` at each institution and ``--server-mbps`` at the
  coordinator, which sends and receives every node's bytes.

    python benchmarks/wan_model.py --dimension 111953 --train-s 5.4
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from securefed.config import load_config
from securefed.flower.supernode import IDLE_POLL_S
from securefed.secagg import STAGE_TABLE, ClientInput, plan_round, simulate_round
from securefed.secagg.roster import generate_identities

SMALL_D = 16


def protocol_bytes(n: int) -> tuple[int, float, float]:
    """(degree, mean bytes up, mean bytes down) per institution for a round of n, with a
    SMALL_D-coordinate vector."""
    cfg = load_config(None, [f"partition.num_clients={n}", f"training.clients_per_round={n}"])
    params = cfg.secure_aggregation.params()
    roster, keys = generate_identities(range(n))
    params = dataclasses.replace(params, roster=roster, identity_keys=keys)
    rng = np.random.default_rng(0)
    inputs = {
        u: ClientInput(
            delta=rng.normal(size=SMALL_D).astype(np.float32), weight=1.0, extras=np.zeros(3)
        )  # fmt: skip
        for u in range(n)
    }
    out = simulate_round(round_index=0, inputs=inputs, params=params,
                         global_adapter_hash=b"g" * 32, vector_spec_hash=b"s" * 32)  # fmt: skip
    traffic = out.transcript["bytes"].values()
    up = sum(t["up"] for t in traffic) / n
    down = sum(t["down"] for t in traffic) / n
    return plan_round(n, params).degree, up, down


def aes_ctr_rate() -> float:
    """Bytes of AES-256-CTR keystream per second on this machine."""
    encryptor = Cipher(algorithms.AES(b"k" * 32), modes.CTR(b"n" * 16)).encryptor()
    block = bytes(64 << 20)
    started = time.perf_counter()
    encryptor.update(block)
    return len(block) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimension", type=int, required=True, help="adapter coordinates")
    parser.add_argument("--train-s", type=float, required=True, help="local training, seconds")
    parser.add_argument("--rtt-s", type=float, default=0.05)
    parser.add_argument("--poll-s", type=float, default=IDLE_POLL_S)
    parser.add_argument("--node-mbps", type=float, default=100.0)
    parser.add_argument("--server-mbps", type=float, default=1000.0)
    parser.add_argument("--measure-1000", action="store_true")
    args = parser.parse_args(argv)
    sizes = [10, 100, *([1000] if args.measure_1000 else [])]
    measured = {}
    for n in sizes:
        measured[n] = protocol_bytes(n)
        k, up, down = measured[n]
        print(f"n={n}: degree {k}, protocol bytes/node up {up:.0f} down {down:.0f}", flush=True)
    if 1000 not in measured:  # a + b*k, fitted on the two measured sizes
        (k1, u1, d1), (k2, u2, d2) = measured[10], measured[100]
        cfg = load_config(None, ["partition.num_clients=1000", "training.clients_per_round=1000"])
        k = plan_round(1000, cfg.secure_aggregation.params()).degree
        per_neighbour = ((u2 - u1) / (k2 - k1), (d2 - d1) / (k2 - k1))
        measured[1000] = (k, u1 + per_neighbour[0] * (k - k1), d1 + per_neighbour[1] * (k - k1))
    rate = aes_ctr_rate()
    vector = 4 * args.dimension
    node_bps, server_bps = args.node_mbps * 1e6 / 8, args.server_mbps * 1e6 / 8
    print(f"AES-256-CTR keystream here: {rate / 1e9:.2f} GB/s; vector {vector / 1e6:.2f} MB")
    print("n | degree | MB/node/round | coordinator MB/round | latency s | transfer s | "
          "masking s (node, server) | round s")  # fmt: skip
    for n, (k, up, down) in sorted(measured.items()):
        per_node = up + down + 2 * (vector - 4 * SMALL_D)
        latency = len(STAGE_TABLE) * (args.poll_s + 2 * args.rtt_s)
        transfer = max(per_node / node_bps, n * per_node / server_bps)
        node_mask, server_mask = (k + 1) * vector / rate, n * vector / rate
        total = args.train_s + latency + transfer + node_mask + server_mask
        print(f"{n} | {k} | {per_node / 1e6:.2f} | {n * per_node / 1e6:.0f} | {latency:.1f} | "
              f"{transfer:.2f} | {node_mask:.2f}, {server_mask:.2f} | {total:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
