"""Secure aggregation: securefed against Flower 1.42's SecAgg+, on the same vectors.

For each (n clients, d coordinates) and dropout rate it measures

- client masking: securefed's ``SecAggClient.masked_input`` (open shares, quantize, derive
  the k pair keys, add k + 1 AES-CTR masks) against Flower's client steps from
  ``secaggplus_mod._collect_masked_vectors`` (weight, quantize, add the RandomState masks,
  P-384 key agreement per neighbour, mod), driven through Flower's own functions;
- mask-only throughput of both, and the raw AES-256-CTR keystream rate of this machine;
- server time: summing the n uploads, and unmasking (reconstructing the secrets and
  regenerating the self masks and the dropped clients' pair masks), at 0% and 10% dropout
  after key sharing;
- upload bytes per client and peak traced memory (tracemalloc) of one client and of the
  server unmasking.

securefed runs the full protocol (every client masks for real, identities on, the
consistency check included) and checks that the sum is exact. Flower's per-client cost is
the same for every client, so its client is timed on a few clients and its server unmasks
synthetic uploads of the right shape (the work does not depend on the values); both use the
same neighbour graph and threshold. Client times are the fastest client (every client does
the same work; on a shared machine the minimum is the stable estimate, as with ``timeit``);
mask-only rates are the best of five alternating runs.

    python benchmarks/secagg_bench.py --dims 1e5 1e6 --clients 10 100

``--consistency`` reports instead what the consistency check (the signed survivor set) adds
to a round: client time (signing, and verifying t or more signatures before unmasking),
server time (verifying every signature, forwarding each client its holders' signatures) and
bytes, against the client's whole round and with the masking throughput against Flower's in
the same run. Up to ``--full-max`` clients every client runs the whole protocol; above it
(n = 1000) the round is too long for a quick run, so a few clients and the server run the
consistency stage after their own share_keys, and the client's round is taken as share_keys
plus masking (a lower bound, so the growth reported is an upper bound).

    nice python benchmarks/secagg_bench.py --consistency --clients 100 1000 --dims 1e5 1e6
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from flwr.common import ndarray_to_bytes
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_combine,
    parameters_addition,
    parameters_mod,
    parameters_multiply,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    bytes_to_public_key,
    generate_key_pairs,
    private_key_to_bytes,
    public_key_to_bytes,
)

from securefed.secagg import (
    RoundContext,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    consistency,
    generate_identities,
    plan_round,
)
from securefed.secagg.crypto import MaskStream, sign
from securefed.secagg.graph import neighbours
from securefed.secagg.masking import DEFAULT_CHUNK_WORDS, apply_masks
from securefed.secagg.quantize import encode_input

FLOWER_CLIP, FLOWER_TARGET, FLOWER_MOD, FLOWER_MAX_WEIGHT = 8.0, 2**22, 2**32, 1000.0
FLOWER_CLIENTS_TIMED = 3


def client_delta(u: int, d: int) -> np.ndarray:
    """Client u's update: the same vector for both implementations."""
    return np.random.default_rng(1000 + u).normal(scale=0.01, size=d).astype(np.float32)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest of a few runs: the machine is shared, so the minimum is the stable figure."""
    return min(timed(fn)[0] for _ in range(repeats))


def traced_peak(fn: Callable[[], object]) -> tuple[float, object]:
    """Peak traced memory (MiB) above the level at the start of ``fn``."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 2**20, out


# -- securefed -----------------------------------------------------------------------------


def bench_ours(n: int, d: int, dropout: float) -> dict[str, float]:
    ids = list(range(n))
    roster, keys = generate_identities(ids)
    params = SecAggParams(clip_norm=10.0, bits=20, roster=roster, identity_keys=keys)
    context = RoundContext(0, n, params, b"g" * 32, b"s" * 32, d, 0)
    clients = {u: SecAggClient(u, context, identity_key=keys[u], roster=roster) for u in ids}
    server = SecAggServer(context, invited=frozenset(ids), roster=roster)
    for u in ids:
        server.accept(clients[u].advertise_keys())
    directory = server.close_advertise_keys()
    for u in ids:
        server.accept(clients[u].share_keys(directory))
    deliveries = server.close_share_keys()
    dropped = set(ids[-round(dropout * n) :]) if dropout else set()
    quantization = params.quantization

    def encoded(u: int, delta: np.ndarray) -> np.ndarray:  # rounding pinned: sum checkable
        return encode_input(delta, 1.0, np.zeros(0), quantization, np.random.default_rng(u))

    client_times, sum_time, upload, client_mem = [], 0.0, 0, 0.0
    for u in ids:
        if u in dropped:
            continue

        delta = client_delta(u, d)

        def step(u: int = u, delta: np.ndarray = delta) -> object:  # quantize + mask, as
            return clients[u].masked_input(deliveries[u], encoded(u, delta))  # Flower's step

        if u == ids[0]:
            client_mem, msg = traced_peak(step)
        else:
            elapsed, msg = timed(step)
            client_times.append(elapsed)
        upload = len(msg.to_bytes())
        sum_time += timed(lambda msg=msg: server.accept(msg))[0]
    survivor_sets = server.close_masked_input()
    for u in server.participants["masked_input"]:
        server.accept(clients[u].sign_survivors(survivor_sets[u]))
    requests = server.close_consistency_check()
    for u in server.participants["consistency_check"]:
        server.accept(clients[u].unmask(requests[u]))
    # tracemalloc costs nothing measurable here: numpy buffers dominate the allocations
    tracemalloc.start()
    unmask_time, total = timed(server.close_unmasking)
    server_mem = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    expected = np.zeros(d, dtype=np.uint32)
    for u in server.participants["masked_input"]:
        np.add(expected, encoded(u, client_delta(u, d)), out=expected)
    return {
        "client_s": min(client_times),
        "server_sum_s": sum_time,
        "server_unmask_s": unmask_time,
        "upload_bytes": upload,
        "client_peak_mib": client_mem,
        "server_peak_mib": server_mem,
        "exact": bool(np.array_equal(total, expected)),
    }


def mask_throughput(d: int, masks: int, flower: bool, repeats: int = 5) -> dict[str, float]:
    """Seconds to apply ``masks`` masks to d coordinates: ours, the bare AES-CTR keystream of
    the same streams through the same chunked buffer (no additions), and Flower's
    ``pseudo_rand_gen`` + ``parameters_addition``. Runs alternate and the fastest of each is
    kept, so all three see the same machine load."""
    keys = [(os.urandom(32), 1) for _ in range(masks)]
    acc = np.zeros(d, dtype=np.uint32)
    zeros, out = memoryview(bytes(4 * DEFAULT_CHUNK_WORDS)), bytearray(4 * DEFAULT_CHUNK_WORDS + 15)

    def raw() -> None:
        streams = [MaskStream(key) for key, _ in keys]
        for start in range(0, d, DEFAULT_CHUNK_WORDS):
            source = zeros[: 4 * min(DEFAULT_CHUNK_WORDS, d - start)]
            for stream in streams:
                stream.write_into(source, out)

    def flower_masks() -> None:
        total = [np.zeros(d, np.int64)]
        for _ in range(masks):
            total = parameters_addition(total, pseudo_rand_gen(os.urandom(32), FLOWER_MOD, [(d,)]))

    runs = {"ours": lambda: apply_masks(acc, keys), "raw": raw}
    if flower:
        runs["flower"] = flower_masks
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn)[0])
    return best


# -- the consistency check's cost -----------------------------------------------------------


def consistency_full(n: int, d: int) -> dict[str, float]:
    """Whole protocol, every client; the median client's round and the part of it that the
    consistency check adds, server time and bytes of the stage."""
    from securefed.secagg.unmasking import UnmaskRequest

    ids = list(range(n))
    roster, keys = generate_identities(ids)
    params = SecAggParams(roster=roster, identity_keys=keys)
    context = RoundContext(0, n, params, b"g" * 32, b"s" * 32, d, 0)
    clients = {u: SecAggClient(u, context, identity_key=keys[u], roster=roster) for u in ids}
    server = SecAggServer(context, invited=frozenset(ids), roster=roster)
    spent = {u: {"round": 0.0, "check": 0.0} for u in ids}

    def client_step(u: int, fn: Callable[[], object], check: bool = False) -> object:
        elapsed, out = timed(fn)
        spent[u]["round"] += elapsed
        if check:
            spent[u]["check"] += elapsed
        return out

    server_s, down, up = 0.0, 0, 0
    for u in ids:
        server.accept(client_step(u, clients[u].advertise_keys))
    directory = server.close_advertise_keys()
    for u in ids:
        server.accept(client_step(u, lambda u=u: clients[u].share_keys(directory)))
    deliveries = server.close_share_keys()
    for u in ids:
        x = encode_input(client_delta(u, d), 1.0, np.zeros(0), params.quantization)
        server.accept(client_step(u, lambda u=u, x=x: clients[u].masked_input(deliveries[u], x)))
    survivor_sets = server.close_masked_input()
    for u in ids:
        msg = client_step(u, lambda u=u: clients[u].sign_survivors(survivor_sets[u]), check=True)
        down += len(survivor_sets[u].to_bytes())
        up += len(msg.to_bytes())
        server_s += timed(lambda msg=msg: server.accept(msg))[0]
    close_s, requests = timed(server.close_consistency_check)
    server_s += close_s
    for u in ids:
        request = requests[u]
        unsigned = UnmaskRequest(request.session_id, request.alive, request.dropped)
        down += len(request.to_bytes()) - len(unsigned.to_bytes())
        server.accept(client_step(u, lambda u=u, r=request: clients[u].unmask(r)))
        # the signature check inside unmask, timed again on its own (it only reads state)
        check = clients[u].state
        spent[u]["check"] += timed(
            lambda c=check, r=request: consistency.check_signatures(c, r.alive, r.signatures)
        )[0]
    server.close_unmasking()
    # medians over the clients: every client does the same work, and on a loaded machine a
    # single client's two figures are noisy
    return {
        "client_round_s": float(np.median([spent[u]["round"] for u in ids])),
        "client_check_s": float(np.median([spent[u]["check"] for u in ids])),
        "server_s": server_s,
        "bytes_per_client": (down + up) / n,
        "clients_timed": n,
    }


def consistency_sampled(n: int, d: int, timed_clients: int = 3) -> dict[str, float]:
    """n too large for a quick full round: every client advertises, a few run share_keys and
    then the consistency stage's own code (as if every neighbour's shares had reached them),
    and the server verifies every signature and forwards them. The client's round is taken
    as its share_keys plus its k + 1 masks over d -- a lower bound (it leaves out opening the
    shares, the pair-key agreements and unmasking), so the growth is an upper bound."""
    from securefed.secagg.unmasking import UnmaskRequest

    ids = list(range(n))
    roster, keys = generate_identities(ids)
    params = SecAggParams(roster=roster)
    context = RoundContext(0, n, params, b"g" * 32, b"s" * 32, d, 0)
    clients = {u: SecAggClient(u, context, identity_key=keys[u], roster=roster) for u in ids}
    server = SecAggServer(context, invited=frozenset(ids), roster=roster)
    for u in ids:
        server.accept(clients[u].advertise_keys())
    directory = server.close_advertise_keys()
    sid, plan = server.session_id, server.plan
    survivors = consistency.SurvivorSet(sid, tuple(ids))
    statement = consistency.survivor_statement(sid, tuple(ids))
    signatures = {u: consistency.SurvivorSignature(u, sid, sign(keys[u], statement)) for u in ids}
    share_s, sign_s = [], []
    timed_ids = ids[:timed_clients]
    for u in timed_ids:
        share_s.append(timed(lambda u=u: clients[u].share_keys(directory))[0])
        state = clients[u].state
        state.masked_with = state.neighbours
        elapsed, signatures[u] = timed(lambda s=state: consistency.sign_survivors(s, survivors))
        sign_s.append(elapsed)
    state = server.state
    state.masked_senders = set(ids)
    server_s = timed(
        lambda: [consistency.accept_survivor_signature(state, signatures[u]) for u in ids]
    )[0]
    forward_s, forwarded = timed(
        lambda: {u: consistency.forwarded_signatures(state, u) for u in ids}
    )
    check_s = [
        timed(lambda u=u: consistency.check_signatures(clients[u].state, tuple(ids), forwarded[u]))[
            0
        ]
        for u in timed_ids
    ]
    mask_s = mask_throughput(d, plan.degree + 1, flower=False, repeats=2)["ours"]
    bytes_per_client = (
        len(survivors.to_bytes())
        + len(signatures[0].to_bytes())
        + len(UnmaskRequest(sid, (), (), forwarded[0]).to_bytes())
        - len(UnmaskRequest(sid, (), ()).to_bytes())
    )
    check = min(sign_s) + min(check_s)
    return {
        "client_round_s": min(share_s) + mask_s + check,
        "client_check_s": check,
        "server_s": server_s + forward_s,
        "bytes_per_client": bytes_per_client,
        "clients_timed": timed_clients,
    }


def report_consistency(dims: list[int], clients: list[int], full_max: int) -> None:
    print(
        "the consistency check's cost per round (identities on); client figures: median of "
        "all clients (full runs) or fastest of the timed ones"
    )
    for d in dims:
        for n in clients:
            plan = plan_round(n, SecAggParams())
            k = plan.degree
            rates = mask_throughput(d, k + 1, flower=True, repeats=3)
            cost = consistency_full(n, d) if n <= full_max else consistency_sampled(n, d)
            growth = cost["client_check_s"] / (cost["client_round_s"] - cost["client_check_s"])
            print(
                f"  d={d:.0e} n={n} ({plan.graph}, k={k}, t={plan.threshold}, "
                f"{cost['clients_timed']} clients timed): client round "
                f"{cost['client_round_s']:.3f} s, of which the check {cost['client_check_s']:.4f} s"
                f" (+{growth:.1%}); server {cost['server_s']:.3f} s; "
                f"{cost['bytes_per_client'] / 1e3:.1f} kB per client; masking {k + 1} masks "
                f"ours {rates['ours']:.3f} s vs Flower {rates['flower']:.3f} s "
                f"({rates['flower'] / rates['ours']:.1f}x)"
            )


# -- Flower SecAgg+ ------------------------------------------------------------------------


def flower_client(
    nid: int, vec: np.ndarray, rd_seed: bytes, sk1: bytes, peer_pks: dict[int, bytes]
) -> list[bytes]:
    """Flower 1.42 ``secaggplus_mod._collect_masked_vectors`` after share decryption."""
    ratio = 100 / FLOWER_MAX_WEIGHT  # num_examples / max_weight
    q_ratio = round(ratio * FLOWER_TARGET)
    params = parameters_multiply([vec], q_ratio / FLOWER_TARGET)
    quantized = factor_combine(q_ratio, quantize(params, FLOWER_CLIP, FLOWER_TARGET))
    dims = [a.shape for a in quantized]
    quantized = parameters_addition(quantized, pseudo_rand_gen(rd_seed, FLOWER_MOD, dims))
    for v, pk in peer_pks.items():
        key = generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(pk))
        mask = pseudo_rand_gen(key, FLOWER_MOD, dims)
        add = nid > v
        quantized = (parameters_addition if add else parameters_subtraction)(quantized, mask)
    quantized = parameters_mod(quantized, FLOWER_MOD)
    return [ndarray_to_bytes(a) for a in quantized]


def bench_flower(n: int, d: int, dropout: float, degree: int, t: int) -> dict[str, float]:
    ids = list(range(1, n + 1))  # Flower node ids are positive
    graph = neighbours(ids, degree, b"shared-graph")
    keys = {u: generate_key_pairs() for u in ids}
    sk = {u: private_key_to_bytes(keys[u][0]) for u in ids}
    pk = {u: public_key_to_bytes(keys[u][1]) for u in ids}
    seeds = {u: os.urandom(32) for u in ids}
    times, upload = [], 0
    for u in ids[:FLOWER_CLIENTS_TIMED]:
        vec = client_delta(u - 1, d)
        elapsed, payload = timed(
            lambda u=u, vec=vec: flower_client(
                u, vec, seeds[u], sk[u], {v: pk[v] for v in graph[u]}
            )
        )
        times.append(elapsed)
        upload = sum(len(b) for b in payload)
    client_mem, _ = traced_peak(
        lambda: flower_client(
            ids[0], client_delta(0, d), seeds[ids[0]], sk[ids[0]], {v: pk[v] for v in graph[ids[0]]}
        )
    )
    dead = set(ids[-round(dropout * n) :]) if dropout else set()
    active = [u for u in ids if u not in dead]
    dims = [(1,), (d,)]
    upload_vec = [np.zeros(1, np.int64), np.random.default_rng(0).integers(0, FLOWER_MOD, d)]
    total = [np.zeros(1, np.int64), np.zeros(d, np.int64)]
    sum_time = timed(lambda: [parameters_addition(total, upload_vec) for _ in active])[0]
    shares = {  # the t shares the server combines per secret: b for alive, sk for dead
        u: create_shares(sk[u] if u in dead else seeds[u], t, t) for u in ids
    }

    def unmask() -> None:
        masked = total
        for u in ids:
            secret = combine_shares(shares[u])
            if u in active:
                masked = parameters_subtraction(masked, pseudo_rand_gen(secret, FLOWER_MOD, dims))
                continue
            for v in graph[u]:
                key = generate_shared_key(bytes_to_private_key(secret), bytes_to_public_key(pk[v]))
                mask = pseudo_rand_gen(key, FLOWER_MOD, dims)
                masked = (parameters_addition if u > v else parameters_subtraction)(masked, mask)
        parameters_mod(masked, FLOWER_MOD)

    unmask_time = timed(unmask)[0]
    # a second, traced run for memory, only where it is quick (tracing slows Flower's Shamir)
    server_mem = traced_peak(unmask)[0] if unmask_time < 5 else float("nan")
    return {
        "client_s": min(times),
        "server_sum_s": sum_time,
        "server_unmask_s": unmask_time,
        "upload_bytes": upload,
        "client_peak_mib": client_mem,
        "server_peak_mib": server_mem,
    }


# -- report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", nargs="+", type=float, default=[1e5, 1e6, 1e7])
    parser.add_argument("--clients", nargs="+", type=int, default=[10, 100])
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0, 0.1])
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--consistency", action="store_true", help="the extra round's cost")
    parser.add_argument("--full-max", type=int, default=100, help="largest n run in full")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; one thread; times in seconds, memory in MiB (tracemalloc)")
    if args.consistency:
        report_consistency([int(x) for x in args.dims], args.clients, args.full_max)
        return
    for d in (int(x) for x in args.dims):
        print(f"\nd = {d:.0e}")
        for n in args.clients:
            plan = plan_round(n, SecAggParams())
            k = plan.degree
            rates = mask_throughput(d, k + 1, not args.skip_flower)
            gbps = {name: 4 * d * (k + 1) / seconds / 1e9 for name, seconds in rates.items()}
            line = (
                f"  n={n} ({plan.graph}, k={k}, t={plan.threshold}), {k + 1} masks only: ours "
                f"{rates['ours']:.3f} s = {gbps['ours']:.2f} GB/s, raw AES-CTR keystream "
                f"{gbps['raw']:.2f} GB/s (ours at {gbps['ours'] / gbps['raw']:.0%} of raw)"
            )
            if "flower" in rates:
                speedup = rates["flower"] / rates["ours"]
                line += f"; Flower {gbps['flower']:.2f} GB/s, ours {speedup:.1f}x faster"
            print(line)
            for dropout in args.dropouts:
                ours = bench_ours(n, d, dropout)
                row = f"    dropout {dropout:.0%}: ours " + _fmt(ours)
                print(row + f", sum exact: {ours['exact']}")
                if not args.skip_flower:
                    flower = bench_flower(n, d, dropout, k, plan.threshold)
                    print(f"    dropout {dropout:.0%}: Flower " + _fmt(flower))
                    print(
                        "      Flower/ours: client "
                        f"{flower['client_s'] / ours['client_s']:.1f}x, server unmask "
                        f"{flower['server_unmask_s'] / ours['server_unmask_s']:.1f}x, upload "
                        f"{flower['upload_bytes'] / ours['upload_bytes']:.2f}x "
                        f"({flower['upload_bytes'] / d:.2f} vs {ours['upload_bytes'] / d:.2f} "
                        "bytes per coordinate)"
                    )


def _fmt(r: dict[str, float]) -> str:
    return (
        f"client {r['client_s']:.3f} s, server sum {r['server_sum_s']:.3f} s + unmask "
        f"{r['server_unmask_s']:.3f} s, upload {r['upload_bytes'] / 1e6:.2f} MB, peak client "
        f"{r['client_peak_mib']:.0f} MiB / server {r['server_peak_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
