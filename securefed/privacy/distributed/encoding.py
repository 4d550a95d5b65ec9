"""Client encoder and server decoder of distributed DP, in secure aggregation's uint32 format.

Client (``encode_client``): flatten; L2-clip to ``clip_norm``; randomized Hadamard rotation
from the round's public seed; multiply by ``scale``; conditional stochastic rounding (redrawn
until the integer vector's L2 norm is within ``plan.l2_sensitivity``, Kairouz et al. Prop.
22); add this client's discrete noise share; reduce mod 2^bits (modular clipping). The
result is the existing ``securefed.secagg.quantize`` layout, length m + 2 * extras:

    [ v_0 mod 2^b .. v_{m-1} mod 2^b | extras limbs exactly as quantize.encode_input ]

so the masked sum mod 2^32 carries it unchanged: 2^b divides 2^32, so the low b bits of the
unmasked total are the sum mod 2^b. Server (``decode_noisy_sum``): centre those bits into
[-2^(b-1), 2^(b-1)), divide by the scale, rotate back, keep the first d coordinates.

With distributed DP on, ``secure_aggregation.bits`` is b, the width of the *aggregate*
(TFF's and both papers' meaning), not the per-client range of plain quantization.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from securefed.privacy.distributed.noise import (
    discrete_gaussian_noise,
    share_random,
    skellam_noise,
)
from securefed.privacy.distributed.parameters import DistributedDpPlan
from securefed.privacy.distributed.rotation import rotate, unrotate
from securefed.privacy.secure_noise import AesCtrRandom
from securefed.secagg.quantize import (
    QuantizationParams,
    decode_sum,
    encode_input,
    l2_clip_factor,
)

_MAX_ROUNDING_TRIES = 100  # each try fails with probability <= beta (~0.61): 1e-21 for 100


def discretize(
    delta: np.ndarray, plan: DistributedDpPlan, rotation_seed: bytes, rng: np.random.Generator
) -> np.ndarray:
    """Clip, rotate, scale and conditionally round one update: int64 (padded_dimension,)."""
    x = np.asarray(delta, dtype=np.float64).reshape(-1)
    if x.shape[0] != plan.dimension:
        raise ValueError(f"update has {x.shape[0]} coordinates, the plan {plan.dimension}")
    norm = float(np.linalg.norm(x))
    if not np.isfinite(norm):
        raise ValueError("update must be finite")
    factor = plan.scale * l2_clip_factor(norm, plan.clip_norm)
    y = rotate(x, rotation_seed)
    y *= factor
    floor = np.floor(y)
    frac = y - floor
    bound_sq = plan.l2_sensitivity**2
    for _ in range(_MAX_ROUNDING_TRIES):
        rounded = floor + (rng.random(y.shape[0]) < frac)
        if float(np.dot(rounded, rounded)) <= bound_sq:
            return rounded.astype(np.int64)
    raise RuntimeError("conditional rounding exceeded its norm bound in every try")


def noise_share(plan: DistributedDpPlan, noise: AesCtrRandom) -> np.ndarray:
    """One client's discrete noise share (int64, padded_dimension), drawn from ``noise``."""
    if plan.mechanism == "skellam":
        return skellam_noise(plan.local_variance, plan.padded_dimension, noise)
    return discrete_gaussian_noise(np.sqrt(plan.local_variance), plan.padded_dimension, noise)


def modular_clip(values: np.ndarray, bits: int) -> np.ndarray:
    """Integers reduced mod 2^bits, as uint32 (the secure sum then adds mod 2^32)."""
    return (np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)).astype(np.uint32)


def centred_sum(total: np.ndarray, bits: int) -> np.ndarray:
    """The low ``bits`` bits of an unmasked uint32 total, centred in [-2^(b-1), 2^(b-1))."""
    low = np.asarray(total, dtype=np.uint32).astype(np.int64) & ((1 << bits) - 1)
    return np.where(low >= 1 << (bits - 1), low - (1 << bits), low)


def encode_client(
    delta: np.ndarray,
    extras: np.ndarray,
    plan: DistributedDpPlan,
    extras_params: QuantizationParams,
    rotation_seed: bytes,
    rng: np.random.Generator,
    noise: AesCtrRandom,
) -> np.ndarray:
    """One client's secure-aggregation input with its noise share (uint32, m + 2 * extras).

    ``rng`` draws the rounding (it protects no one: the sensitivity bound holds for every
    outcome), ``noise`` the share: pass ``noise.share_random()`` (AES-CTR, OS key).
    Weights are uniform under distributed DP (sensitivity is one clipped update).
    """
    integers = discretize(delta, plan, rotation_seed, rng) + noise_share(plan, noise)
    return pack_client_input(integers, extras, plan, extras_params, rng)


def pack_client_input(
    integers: np.ndarray,
    extras: np.ndarray,
    plan: DistributedDpPlan,
    extras_params: QuantizationParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """A client's rounded update plus noise share, reduced mod 2^bits, with its extras limbs:
    the uint32 input ``encode_client`` returns (separate so a simulation can keep the parts)."""
    limbs = encode_input(np.zeros(0), 1.0, extras, extras_params, rng)
    return np.concatenate([modular_clip(integers, plan.bits), limbs])


@dataclass(frozen=True, eq=False)
class NoisySum:
    """The descaled, unrotated noisy sum and the extras decoded beside it."""

    delta_sum: np.ndarray  # float64 (d,): sum of clipped updates plus the survivors' noise
    extras_sum: np.ndarray  # float64 (m,)
    wrap_count: int  # extras limbs no honest cohort of this size can give (noisy coordinates
    # wrap undetectably: their rate is bounded by the plan's modclip_probability instead)
    headroom_used: float  # max |centred coordinate| / 2^(bits-1): near 1 means wraps are likely


def decode_noisy_sum(
    total: np.ndarray,
    plan: DistributedDpPlan,
    extras_params: QuantizationParams,
    rotation_seed: bytes,
    contributors: int,
) -> NoisySum:
    """Decode the unmasked uint32 total of ``contributors`` encoded inputs."""
    total = np.asarray(total, dtype=np.uint32)
    m = plan.padded_dimension
    centred = centred_sum(total[:m], plan.bits)
    extras = decode_sum(total[m:], 0, contributors, extras_params)
    delta_sum = unrotate(centred.astype(np.float64) / plan.scale, plan.dimension, rotation_seed)
    headroom = float(np.abs(centred).max()) / float(1 << (plan.bits - 1))
    return NoisySum(delta_sum, extras.extras_sum, extras.wrap_count, headroom)


def round_rotation_seed(global_adapter_hash: bytes, round_index: int) -> bytes:
    """The public rotation seed of a round, from what every party already agrees on.

    Privacy does not rest on it: any rotation preserves the L2 norm, so the sensitivity and
    the accounting hold for every seed; a seed chosen to be unlucky can only raise the wrap
    rate (utility), which ``NoisySum.headroom_used`` shows.
    """
    label = b"securefed/distributed-dp/round-seed/v1"
    return hashlib.sha256(label + global_adapter_hash + round_index.to_bytes(8, "big")).digest()


@dataclass(frozen=True, eq=False)
class DistributedDpCodec:
    """The round's encode/decode pair: a ``securefed.secagg.InputCodec``.

    ``encoded_dimension`` replaces the update's dimension in the round's ``RoundContext``;
    ``encode`` runs on each client (its noise share from a fresh AES-CTR key, ``share_random``;
    the rounding from ``rng``, or numpy's OS-seeded generator),
    ``decode`` on the server after unmasking, with the number of inputs in the sum;
    ``bind`` folds the plan into the vector-spec hash the session id covers, so clients
    holding different plans cannot complete a round together.
    """

    plan: DistributedDpPlan
    extras_params: QuantizationParams
    rotation_seed: bytes

    @property
    def encoded_dimension(self) -> int:
        return self.plan.padded_dimension

    def encode(
        self,
        delta: np.ndarray,
        weight: float,
        extras: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        if weight != 1.0:
            raise ValueError(f"distributed DP weighs every client 1 (uniform), got {weight}")
        rng = rng if rng is not None else np.random.default_rng()
        return encode_client(
            delta, extras, self.plan, self.extras_params, self.rotation_seed, rng, share_random()
        )

    def decode(self, total: np.ndarray, contributors: int) -> NoisySum:
        return decode_noisy_sum(
            total, self.plan, self.extras_params, self.rotation_seed, contributors
        )

    def bind(self, vector_spec_hash: bytes) -> bytes:
        """The vector-spec hash of a round run with this plan."""
        label = b"securefed/distributed-dp/vector-spec/v1"
        return hashlib.sha256(label + vector_spec_hash + self.plan.to_bytes()).digest()
