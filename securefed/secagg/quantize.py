"""Fixed-point encoding of one client's input into Z_{2^32}, and decoding of the masked sum.

Layout of the encoded vector (uint32, length d + 2m):

    [ q(delta)_0 .. q(delta)_{d-1} | hi(e)_0 lo(e)_0 .. hi(e)_{m-1} lo(e)_{m-1} ]

- delta (float, d): L2-clipped to ``clip_norm``, multiplied by the client weight w in (0, 1],
  scaled so that ``clip_norm`` maps to ``q_max = 2^(bits-1) - 1``, unbiased stochastic
  rounding (E[q] = x exactly), stored as centred two's complement mod 2^32.
- extras (float64, m; e.g. [w, w*loss, w*accuracy], each in [-extras_bound, extras_bound]):
  scaled so that ``extras_bound`` maps to q_max * 2^(bits-1), rounded the same way, then
  split into two limbs hi * 2^(bits-1) + lo with |hi|, lo <= q_max. Each limb sums like a
  delta coordinate, so one overflow rule covers both, and the extras get 2(bits-1) bits of
  precision (weights divide the delta sum, so they need more than bits-1).

Overflow: every coordinate of a client is at most q_max in magnitude, so the sum of n
clients decodes exactly iff n * q_max + headroom < 2^31 (``check_no_overflow``, called when
the config loads). A decoded coordinate beyond n * q_max cannot come from honest inputs: it
is counted as a wrap (``DecodedSum.wrap_count``), the plausibility monitor of DESIGN.md §3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from securefed.errors import ConfigError

MODULUS_BITS = 32
_CHUNK = 1 << 16  # coordinates per encoding chunk: float64 temporaries of 512 KiB stay in L2


@dataclass(frozen=True)
class QuantizationParams:
    """Public fixed-point parameters; bound into the session id."""

    clip_norm: float
    bits: int
    extras_bound: float = 1000.0

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive, got {self.clip_norm}")
        if not 2 <= self.bits <= 31:
            raise ValueError(f"bits must be in [2, 31], got {self.bits}")
        if not self.extras_bound > 0:
            raise ValueError(f"extras_bound must be positive, got {self.extras_bound}")

    @property
    def q_max(self) -> int:
        """Largest magnitude of one client's encoded coordinate (and of each extras limb)."""
        return 2 ** (self.bits - 1) - 1

    @property
    def limb_base(self) -> int:
        return 2 ** (self.bits - 1)

    @property
    def delta_scale(self) -> float:
        """Encoded units per unit of weighted, clipped delta."""
        return self.q_max / self.clip_norm

    @property
    def extras_scale(self) -> float:
        return self.q_max * self.limb_base / self.extras_bound

    def to_bytes(self) -> bytes:
        """Canonical encoding, hashed into the session id."""
        return struct.pack(">dId", self.clip_norm, self.bits, self.extras_bound)


def l2_clip_factor(norm: float, clip_norm: float) -> float:
    """What a vector of L2 norm ``norm`` is multiplied by to clip it to ``clip_norm``."""
    return min(1.0, clip_norm / norm if norm else 1.0)


def encoded_length(dimension: int, extras_count: int) -> int:
    """Number of uint32 coordinates a client uploads."""
    return dimension + 2 * extras_count


def _stochastic_round(x: np.ndarray, rng: np.random.Generator, uniform: np.ndarray) -> np.ndarray:
    """Unbiased rounding, in place: floor(x) + 1 with probability frac(x), so E[result] = x.

    ``uniform`` is scratch space of x's shape (float64).
    """
    floor = np.floor(x)
    np.subtract(x, floor, out=x)  # x is now frac(x)
    rng.random(out=uniform)
    np.add(floor, uniform < x, out=floor)
    return floor


def encode_input(
    delta: np.ndarray,
    weight: float,
    extras: np.ndarray,
    params: QuantizationParams,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One client's encoded input (uint32, length d + 2m); ``rng`` defaults to OS entropy."""
    rng = rng if rng is not None else np.random.default_rng()
    delta = np.asarray(delta)
    extras = np.asarray(extras, dtype=np.float64)
    if delta.ndim != 1 or extras.ndim != 1:
        raise ValueError("delta and extras must be 1-D vectors")
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"client weight must be in (0, 1], got {weight}")
    norm = float(np.linalg.norm(delta.astype(np.float64)))
    if not np.isfinite(norm) or not np.all(np.isfinite(extras)):
        raise ValueError("delta and extras must be finite")
    if np.any(np.abs(extras) > params.extras_bound):
        raise ValueError(f"extras must lie in [-{params.extras_bound}, {params.extras_bound}]")
    d, q_max = delta.shape[0], params.q_max
    factor = weight * params.delta_scale * l2_clip_factor(norm, params.clip_norm)
    out = np.empty(encoded_length(d, extras.shape[0]), dtype=np.uint32)
    signed = out.view(np.int32)
    scratch = np.empty(min(d, _CHUNK), dtype=np.float64)
    for start in range(0, d, _CHUNK):
        x = delta[start : start + _CHUNK].astype(np.float64)  # (chunk,) float64
        np.multiply(x, factor, out=x)
        np.clip(x, -q_max, q_max, out=x)  # guards the last ulp of the clip
        signed[start : start + x.shape[0]] = _stochastic_round(x, rng, scratch[: x.shape[0]])
    # Extras: round at full precision, then split into limbs (hi, lo), lo in [0, limb_base).
    limit = q_max * params.limb_base
    e = np.clip(extras * params.extras_scale, -limit, limit)
    value = _stochastic_round(e, rng, np.empty_like(e)).astype(np.int64)
    hi, lo = np.divmod(value, params.limb_base)
    signed[d:] = np.stack([hi, lo], axis=1).reshape(-1)
    return out


@dataclass(frozen=True)
class DecodedSum:
    """The float sums recovered from the unmasked total, and the plausibility check."""

    delta_sum: np.ndarray  # float64 (d,)
    extras_sum: np.ndarray  # float64 (m,)
    wrap_count: int  # coordinates whose decoded value no honest cohort of this size can give


def decode_sum(
    total: np.ndarray, dimension: int, contributors: int, params: QuantizationParams
) -> DecodedSum:
    """Decode the sum of ``contributors`` encoded inputs (uint32 mod 2^32)."""
    signed = np.asarray(total, dtype=np.uint32).view(np.int32)  # centred two's complement
    bound = contributors * params.q_max
    wrap_count = int(np.count_nonzero(np.abs(signed.astype(np.int64)) > bound))
    delta_sum = signed[:dimension].astype(np.float64) / params.delta_scale
    limbs = signed[dimension:].astype(np.int64).reshape(-1, 2)
    extras_int = limbs[:, 0] * params.limb_base + limbs[:, 1]  # exact: |.| < 2^51
    extras_sum = extras_int.astype(np.float64) / params.extras_scale
    return DecodedSum(delta_sum=delta_sum, extras_sum=extras_sum, wrap_count=wrap_count)


def error_bound(contributors: int, params: QuantizationParams) -> tuple[float, float]:
    """Worst-case absolute error per coordinate of (delta_sum, extras_sum).

    Each client's stochastic rounding moves a coordinate by less than one unit; the limb
    split of the extras is exact.
    """
    return contributors / params.delta_scale, contributors / params.extras_scale


def max_encoded_sum(clients: int, bits: int, noise_headroom: int = 0) -> int:
    """Largest magnitude a coordinate of the sum of ``clients`` inputs can reach."""
    return clients * (2 ** (bits - 1) - 1) + noise_headroom


def check_no_overflow(clients: int, bits: int, noise_headroom: int = 0) -> None:
    """Raise ``ConfigError`` unless the sum of ``clients`` inputs stays below 2^31.

    Covers the delta and the extras limbs alike (both are bounded by 2^(bits-1) - 1);
    ``noise_headroom`` is room reserved for noise added inside the sum (distributed DP).
    """
    worst = max_encoded_sum(clients, bits, noise_headroom)
    if worst < 2 ** (MODULUS_BITS - 1):
        return
    limit = 2 ** (MODULUS_BITS - 1)
    fitting = [
        b for b in range(2, MODULUS_BITS) if max_encoded_sum(clients, b, noise_headroom) < limit
    ]
    allowed = f"at most {max(fitting)}" if fitting else "no bit width fits"
    raise ConfigError(
        "secure_aggregation.bits",
        bits,
        f"{allowed} for {clients} clients per round (clients * (2^(bits-1) - 1) + headroom "
        f"{noise_headroom} must stay below 2^31 to rule out modular overflow)",
    )


class Decoded(Protocol):
    """What a codec recovers from an unmasked total (``DecodedSum`` is one)."""

    delta_sum: np.ndarray  # float64 (d,)
    extras_sum: np.ndarray  # float64 (m,)
    wrap_count: int


class InputCodec(Protocol):
    """How a client's input becomes the uint32 vector it masks, and how the server reads the
    unmasked total. ``FixedPointCodec`` is the default; distributed DP brings its own
    (``securefed.privacy.distributed.encoding``), with noise shares inside the encoding."""

    @property
    def encoded_dimension(self) -> int:
        """Coordinates of the update's part of the encoded vector (extras excluded)."""
        ...

    def encode(
        self,
        delta: np.ndarray,
        weight: float,
        extras: np.ndarray,
        rng: np.random.Generator | None,
    ) -> np.ndarray: ...

    def decode(self, total: np.ndarray, contributors: int) -> Decoded: ...


@dataclass(frozen=True)
class FixedPointCodec:
    """The plain fixed-point encoding of this module, as an ``InputCodec``."""

    params: QuantizationParams
    dimension: int

    @property
    def encoded_dimension(self) -> int:
        return self.dimension

    def encode(
        self,
        delta: np.ndarray,
        weight: float,
        extras: np.ndarray,
        rng: np.random.Generator | None,
    ) -> np.ndarray:
        return encode_input(delta, weight, extras, self.params, rng)

    def decode(self, total: np.ndarray, contributors: int) -> DecodedSum:
        return decode_sum(total, self.dimension, contributors, self.params)
